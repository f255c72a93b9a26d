import { mutation, v } from "@pylon/functions";

// POST /api/fn/createChannel {"name"} — channels are written only here (the policy says
// allowInsert: "false"), so names are checked in one place. The creator joins at once.
export default mutation({
  args: { name: v.string() },
  async handler(ctx, { name }) {
    if (!ctx.auth.userId) throw ctx.error("AUTH_REQUIRED", "sign in to create a channel");
    const clean = name.trim().toLowerCase();
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(clean)) {
      throw ctx.error("INVALID_CHANNEL_NAME", "use 1-32 letters, digits, '-' or '_', starting with a letter or digit");
    }
    if (await ctx.db.lookup("Channel", "name", clean)) throw ctx.error("CHANNEL_EXISTS", `#${clean} exists already: join it`);
    const now = new Date().toISOString();
    const id = await ctx.db.insert("Channel", { name: clean, createdBy: ctx.auth.userId, createdAt: now });
    await ctx.db.insert("Unread", { userId: ctx.auth.userId, channelId: id, count: 0, lastReadAt: now });
    return { id, name: clean };
  },
});
