import { mutation, v } from "@pylon/functions";

// POST /api/fn/addTodos {"titles": ["a", "b"]} — all rows or none: one transaction.
export default mutation({
  args: { titles: v.array(v.string()), priority: v.optional(v.int()) },
  async handler(ctx, { titles, priority }) {
    if (titles.length === 0) ctx.error("NO_TITLES", "give at least one title");
    const ids: string[] = [];
    for (const title of titles) {
      if (!title.trim()) ctx.error("EMPTY_TITLE", "titles must not be blank");
      ids.push(await ctx.db.insert("Todo", { title, done: false, priority: priority ?? null, ownerId: ctx.auth.userId }));
    }
    return { ids };
  },
});
