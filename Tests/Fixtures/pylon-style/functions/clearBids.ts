import { mutation, v } from "@pylonsync/functions";

// Like a game's "remove bots": deletes rows that belong to other users.
export default mutation({
  args: { auctionId: v.string() },
  async handler(ctx, { auctionId }) {
    const auction = await ctx.db.get("Auction", auctionId);
    if (!auction || auction.ownerId !== ctx.auth.userId) throw ctx.error("FORBIDDEN", "only the owner clears bids");
    const bids = await ctx.db.query("Bid", { auctionId });
    for (const b of bids) await ctx.db.delete("Bid", b.id);
    return bids.length;
  },
});
