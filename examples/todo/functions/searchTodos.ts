import { query, v } from "@pylon/functions";

// POST /api/fn/searchTodos {"q": "milk"} — full-text over title and notes (the manifest's
// "search" config), open/done counts, highest priority first; each hit with its owner.
export default query({
  args: { q: v.string() },
  async handler(ctx, { q }) {
    const found = await ctx.db.search("Todo", { query: q, facets: ["done"], sort: ["priority", "desc"] });
    const ids = found.hits.map((t) => t.id);
    const { Todo } = await ctx.db.queryGraph({ Todo: { where: { id: { $in: ids } }, include: { owner: {} } } });
    const byId = new Map(Todo.map((t) => [t.id, t]));
    return { total: found.total, done: found.facetCounts.done ?? {}, hits: ids.map((id) => byId.get(id)) };
  },
});
