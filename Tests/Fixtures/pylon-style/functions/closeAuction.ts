import { mutation, v } from "@pylonsync/functions";

// The owner closes the auction; every bid (other users' rows) gets its outcome.
export default mutation({
  args: { auctionId: v.string() },
  async handler(ctx, { auctionId }) {
    const auction = await ctx.db.get("Auction", auctionId);
    if (!auction) throw ctx.error("NOT_FOUND", "no such auction");
    if (auction.ownerId !== ctx.auth.userId) throw ctx.error("FORBIDDEN", "only the owner closes an auction");
    const bids = await ctx.db.query("Bid", { auctionId });
    const best = bids.reduce((m, b) => Math.max(m, b.amount), 0);
    for (const b of bids) await ctx.db.update("Bid", b.id, { status: b.amount === best ? "won" : "lost" });
    await ctx.db.update("Auction", auctionId, { status: "closed" });
    return { bids: bids.length, best };
  },
});
