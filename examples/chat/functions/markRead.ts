import { mutation, v } from "@pylon/functions";

// POST /api/fn/markRead {"channelId"} — the caller has seen the channel up to now.
export default mutation({
  args: { channelId: v.string() },
  async handler(ctx, { channelId }) {
    if (!ctx.auth.userId) throw ctx.error("AUTH_REQUIRED", "sign in first");
    const mine = await ctx.db.query("Unread", { userId: ctx.auth.userId, channelId });
    if (mine.length === 0) return { count: 0 };
    await ctx.db.update("Unread", mine[0].id as string, { count: 0, lastReadAt: new Date().toISOString() });
    return { count: 0 };
  },
});
