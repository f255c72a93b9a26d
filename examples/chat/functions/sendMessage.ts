import { mutation, v } from "@pylon/functions";

// POST /api/fn/sendMessage {"channelId", "body", "fileId"?} — the message and the job that
// recounts the channel's unread counts commit together: a rollback sends neither.
export default mutation({
  args: { channelId: v.string(), body: v.string(), fileId: v.optional(v.string()) },
  async handler(ctx, { channelId, body, fileId }) {
    if (!ctx.auth.userId) throw ctx.error("AUTH_REQUIRED", "sign in to send messages");
    const text = body.trim();
    if (!text && !fileId) throw ctx.error("EMPTY_MESSAGE", "write something or attach an image");
    if (text.length > 4000) throw ctx.error("MESSAGE_TOO_LONG", "messages hold at most 4000 characters");
    if (fileId !== undefined && fileId !== null && !/^file_[A-Za-z0-9_-]{32}$/.test(fileId)) {
      throw ctx.error("INVALID_FILE", "attach a file id returned by /api/files/upload");
    }
    if (!(await ctx.db.get("Channel", channelId))) throw ctx.error("CHANNEL_NOT_FOUND", "no such channel");
    const member = await ctx.db.query("Unread", { userId: ctx.auth.userId, channelId });
    if (member.length === 0) throw ctx.error("NOT_A_MEMBER", "join the channel before writing in it");
    const me = await ctx.db.get("User", ctx.auth.userId);
    // An email-code account is named after its address until the user picks a name.
    const email = String(me?.email ?? "");
    const chosen = String(me?.displayName ?? "");
    const authorName = chosen && chosen !== email ? chosen : email.split("@")[0] || "someone";
    const now = new Date().toISOString();
    const id = await ctx.db.insert("Message", {
      channelId, authorId: ctx.auth.userId, authorName, body: text, fileId: fileId ?? null, createdAt: now,
    });
    // The sender has read their own message.
    await ctx.db.update("Unread", member[0].id as string, { lastReadAt: now, count: 0 });
    await ctx.jobs.enqueue("recountUnread", { channelId });
    return { id, createdAt: now };
  },
});
