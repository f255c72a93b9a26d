import { mutation, v } from "@pylonsync/functions";

// Bids are written only here (the policy says allowInsert: "false"), so the rules a
// client cannot be trusted with live in one place: who bids, on what, and how much.
export default mutation({
  args: { auctionId: v.string(), amount: v.number() },
  async handler(ctx, { auctionId, amount }) {
    if (!ctx.auth.userId) throw ctx.error("UNAUTHENTICATED", "sign in to bid");
    const auction = await ctx.db.get("Auction", auctionId);
    if (!auction || auction.status !== "open") throw ctx.error("AUCTION_CLOSED", "this auction does not take bids");
    if (auction.ownerId === ctx.auth.userId) throw ctx.error("OWN_AUCTION", "you cannot bid on your own auction");
    const bids = await ctx.db.query("Bid", { auctionId });
    const best = bids.reduce((m, b) => Math.max(m, b.amount), 0);
    if (amount <= best) throw ctx.error("BID_TOO_LOW", `bid more than ${best}`);
    return ctx.db.insert("Bid", { auctionId, userId: ctx.auth.userId, amount, status: "leading" });
  },
});
