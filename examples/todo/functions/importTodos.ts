import { action } from "@pylon/functions";

// A webhook: POST /api/webhooks/importTodos with a plain-text body, one title per line.
// Webhooks run actions with args {rawBody} and ctx.request {method, path, headers, rawBody}.
export default action(async (ctx, { rawBody }) => {
  const titles = String(rawBody ?? "").split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
  if (titles.length === 0) ctx.error("NO_TITLES", "send one title per line");
  const { ids } = await ctx.runMutation("addTodos", { titles });
  return { imported: ids.length, from: ctx.request?.headers["user-agent"] ?? null };
});
