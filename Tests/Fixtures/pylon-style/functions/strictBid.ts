import { mutation, v } from "@pylonsync/functions";

// Opts in to the caller's policies: the Bid policy refuses every insert.
export default mutation({
  policies: "enforce",
  args: { auctionId: v.string() },
  handler: async (ctx, { auctionId }) =>
    ctx.db.insert("Bid", { auctionId, userId: ctx.auth.userId ?? "", amount: 1, status: "leading" }),
});
