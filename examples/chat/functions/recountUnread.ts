import { mutation, v } from "@pylon/functions";

// The job sendMessage enqueues: each member's unread count becomes the number of other
// people's messages after their lastReadAt. It derives the counts from the rows instead of
// adding one, so it is idempotent: a job run twice (jobs are at least once) or a client
// calling it directly only writes the right numbers again.
export default mutation({
  args: { channelId: v.string() },
  async handler(ctx, { channelId }) {
    const members = await ctx.db.query("Unread", { channelId });
    let changed = 0;
    for (const m of members) {
      const newer = await ctx.db.query("Message", { channelId, createdAt: { $gt: m.lastReadAt as string } });
      const count = newer.filter((msg) => msg.authorId !== m.userId).length;
      if (count !== m.count) {
        await ctx.db.update("Unread", m.id as string, { count });
        changed++;
      }
    }
    return { members: members.length, changed };
  },
});
