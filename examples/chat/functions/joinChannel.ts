import { mutation, v } from "@pylon/functions";

// POST /api/fn/joinChannel {"channelId"} — a member is a user with an Unread row for the
// channel; joining twice changes nothing.
export default mutation({
  args: { channelId: v.string() },
  async handler(ctx, { channelId }) {
    if (!ctx.auth.userId) throw ctx.error("AUTH_REQUIRED", "sign in to join a channel");
    if (!(await ctx.db.get("Channel", channelId))) throw ctx.error("CHANNEL_NOT_FOUND", "no such channel");
    const mine = await ctx.db.query("Unread", { userId: ctx.auth.userId, channelId });
    if (mine.length > 0) return { joined: false };
    await ctx.db.insert("Unread", { userId: ctx.auth.userId, channelId, count: 0, lastReadAt: new Date().toISOString() });
    return { joined: true };
  },
});
