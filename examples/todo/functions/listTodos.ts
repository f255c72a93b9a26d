import { query, v } from "@pylon/functions";

// POST /api/fn/listTodos {"done": false}
export default query({
  args: { done: v.optional(v.boolean()) },
  async handler(ctx, args) {
    const filter: Record<string, unknown> = { $order: { title: "asc" } };
    if (args.done !== undefined) filter.done = args.done;
    return ctx.db.query("Todo", filter);
  },
});
