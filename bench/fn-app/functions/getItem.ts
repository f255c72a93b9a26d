import { query, v } from "@pylon/functions";

// The benchmark's read: one row by id.
export default query({
  args: { id: v.string() },
  async handler(ctx, { id }) {
    return ctx.db.get("Item", id);
  },
});
