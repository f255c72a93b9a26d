import { mutation, v } from "@pylon/functions";

// The benchmark's write: one row inserted, committed, change-logged.
export default mutation({
  args: { title: v.string() },
  async handler(ctx, { title }) {
    return { id: await ctx.db.insert("Item", { title, done: false }) };
  },
});
