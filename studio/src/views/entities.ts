/**
 * The entity browser and editor: `/studio/entities` lists the manifest's entities,
 * `/studio/entities/E` pages through E's rows (filters, sort, paging over `POST
 * /api/query/E`), `/studio/entities/E/new` inserts one and `/studio/entities/E/ID` shows,
 * edits (PATCH of the changed fields) and deletes one.
 */
import { seg } from "../api.ts";
import { button, clear, field, h, notice, page, select, table, type Column } from "../dom.ts";
import { buildQuery, filterOps, nextSort, pageOf, type FilterOp, type ListState } from "../filters.ts";
import { cellText } from "../format.ts";
import { inputText, kindOf, rowFromForm, type EntityInfo } from "../schema.ts";
import type { ViewContext } from "../view.ts";

export async function entitiesView(ctx: ViewContext): Promise<HTMLElement> {
  const [name, id] = ctx.rest;
  const entity = ctx.entities.find((e) => e.name === name);
  if (!entity) return entityIndex(ctx);
  if (id === "new") return rowEditor(ctx, entity, null);
  if (id) return rowEditor(ctx, entity, id);
  return rowList(ctx, entity);
}

function entityIndex(ctx: ViewContext): HTMLElement {
  const rows = ctx.entities.map((e) => ({ name: e.name, fields: e.fields.map((f) => f.name).join(", ") }));
  return page("view-entities", "Data",
    table("Entities in the manifest", rows, [
      { key: "name", label: "Entity", render: (r) => link(ctx, `/studio/entities/${seg(r.name)}`, r.name) },
      { key: "fields", label: "Fields" },
    ], "entity-index"));
}

function link(ctx: ViewContext, href: string, text: string): HTMLAnchorElement {
  return h("a", { href, onclick: (e: Event) => { e.preventDefault(); ctx.navigate(href); } }, text);
}

/** The list's state lives in the query string, so a reload or a shared link keeps it. */
function stateFromURL(): ListState {
  const q = new URLSearchParams(location.search);
  const filters: ListState["filters"] = [];
  for (const f of q.getAll("f")) {
    const [field, op, ...value] = f.split(":");
    if (field && filterOps.some((o) => o.op === op)) filters.push({ field, op: op as FilterOp, value: value.join(":") });
  }
  const s = q.get("sort");
  const sort = s ? { field: s.replace(/^-/, ""), dir: s.startsWith("-") ? "desc" as const : "asc" as const } : null;
  const pageSize = [10, 25, 50, 100].includes(Number(q.get("size"))) ? Number(q.get("size")) : 25;
  return { filters, sort, page: Math.max(0, Number(q.get("page")) | 0), pageSize };
}

function urlFor(entity: string, s: ListState): string {
  const q = new URLSearchParams();
  for (const f of s.filters) q.append("f", `${f.field}:${f.op}:${f.value}`);
  if (s.sort) q.set("sort", (s.sort.dir === "desc" ? "-" : "") + s.sort.field);
  if (s.page) q.set("page", String(s.page));
  if (s.pageSize !== 25) q.set("size", String(s.pageSize));
  const qs = q.toString();
  return `/studio/entities/${seg(entity)}${qs ? "?" + qs : ""}`;
}

async function rowList(ctx: ViewContext, entity: EntityInfo): Promise<HTMLElement> {
  const state = stateFromURL();
  const go = (s: ListState) => ctx.navigate(urlFor(entity.name, s));
  const names = ["id", ...entity.fields.map((f) => f.name)];
  const results = h("div", { "aria-live": "polite" });

  const filterList = h("div", { class: "filters" });
  const rowsUI: { field: HTMLSelectElement; op: HTMLSelectElement; value: HTMLInputElement }[] = [];
  const addFilter = (f = { field: names[0], op: "eq" as FilterOp, value: "" }) => {
    const fieldSel = select(names.map((n) => ({ value: n, label: n })), f.field);
    const opSel = select(filterOps.map((o) => ({ value: o.op, label: o.label })), f.op);
    const value = h("input", { type: "text", value: f.value });
    const ui = { field: fieldSel, op: opSel, value };
    rowsUI.push(ui);
    const row: HTMLElement = h("fieldset", { class: "filter" }, h("legend", {}, `Filter ${rowsUI.length}`),
      field("Field", fieldSel), field("Condition", opSel), field("Value", value),
      button("Remove", () => { rowsUI.splice(rowsUI.indexOf(ui), 1); row.remove(); }));
    filterList.append(row);
  };
  for (const f of state.filters) addFilter(f);
  const form = h("form", { class: "filter-form", "data-testid": "entity-filters", "aria-label": `Filter ${entity.name}` },
    filterList, button("Add filter", () => addFilter()),
    field("Rows per page", select([10, 25, 50, 100].map((n) => ({ value: String(n), label: String(n) })), String(state.pageSize), { name: "size" })),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const size = Number((form.querySelector("select[name=size]") as HTMLSelectElement).value);
    go({ ...state, page: 0, pageSize: size, filters: rowsUI.map((u) => ({ field: u.field.value, op: u.op.value as FilterOp, value: u.value.value })) });
  });

  let body: Record<string, unknown>;
  try {
    body = buildQuery(state, entity.fields);
  } catch (e) {
    results.append(notice("error", (e as Error).message));
    return page("view-entity-list", entity.name, form, results);
  }
  const raw = await ctx.api.post<Record<string, unknown>[]>(`/api/query/${seg(entity.name)}`, body);
  const { rows, hasMore } = pageOf(raw, state.pageSize);
  const columns: Column<Record<string, unknown>>[] = names.map((n) => ({
    key: n,
    sorted: state.sort?.field === n ? (state.sort.dir === "asc" ? "ascending" : "descending") : undefined,
    onSort: () => go({ ...state, page: 0, sort: nextSort(state.sort, n) }),
    render: n === "id" ? (r) => link(ctx, `/studio/entities/${seg(entity.name)}/${seg(String(r.id))}`, cellText(r.id, 16)) : undefined,
  }));
  results.append(
    h("p", { role: "status" }, `Rows ${state.page * state.pageSize + (rows.length ? 1 : 0)}–${state.page * state.pageSize + rows.length}${hasMore ? " (more follow)" : ""}`),
    table(`${entity.name} rows`, rows, columns, "entity-rows"),
    h("nav", { class: "pager", "aria-label": "Pages" },
      button("Previous page", () => go({ ...state, page: state.page - 1 }), { disabled: state.page === 0 }),
      button("Next page", () => go({ ...state, page: state.page + 1 }), { disabled: !hasMore })));
  return page("view-entity-list", entity.name,
    h("p", {}, link(ctx, `/studio/entities/${seg(entity.name)}/new`, `Insert a ${entity.name}`)),
    form, results);
}

async function rowEditor(ctx: ViewContext, entity: EntityInfo, id: string | null): Promise<HTMLElement> {
  const path = `/api/entities/${seg(entity.name)}`;
  const row = id ? await ctx.api.get<Record<string, unknown>>(`${path}/${seg(id)}`) : {};
  const inputs = new Map<string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>();
  const controls = entity.fields.map((f) => {
    const text = inputText(row[f.name]);
    let input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
    if (kindOf(f.type) === "bool") {
      input = select([...(f.optional ? [{ value: "", label: "(empty)" }] : []), { value: "true", label: "true" }, { value: "false", label: "false" }], text || (f.optional ? "" : "false"));
    } else if (f.type === "richtext") {
      input = h("textarea", { rows: 4 }, text);
    } else {
      input = h("input", { type: "text", value: text, inputmode: kindOf(f.type) === "text" ? undefined : "decimal" });
    }
    input.name = f.name;
    inputs.set(f.name, input);
    return field(f.name, input, `${f.type}${f.optional ? ", optional" : ""}${f.unique ? ", unique" : ""}`);
  });
  const status = h("div", { "aria-live": "polite", "data-testid": "row-status" });
  const form = h("form", { "data-testid": "row-form", "aria-label": id ? `Edit ${entity.name} ${id}` : `New ${entity.name}` },
    id ? h("p", {}, "id: ", h("code", {}, id)) : null, ...controls,
    h("button", { type: "submit" }, id ? "Save changes" : "Insert"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(status);
    const texts: Record<string, string> = {};
    for (const [name, input] of inputs) {
      // A patch sends only what changed; an insert sends every field given a value.
      if (id ? input.value !== inputText(row[name]) : input.value !== "") texts[name] = input.value;
    }
    const parsed = rowFromForm(entity.fields, texts);
    if (!parsed.ok) return void status.append(notice("error", parsed.message));
    try {
      if (id) {
        await ctx.api.call("PATCH", `${path}/${seg(id)}`, parsed.row);
        Object.assign(row, parsed.row);
        status.append(notice("ok", `Saved ${Object.keys(parsed.row).length} field(s).`));
      } else {
        const made = await ctx.api.post<{ id?: string }>(path, parsed.row);
        ctx.navigate(`/studio/entities/${seg(entity.name)}/${seg(String(made?.id ?? ""))}`);
      }
    } catch (err) {
      status.append(notice("error", (err as Error).message));
    }
  });
  const del = id ? button("Delete this row", async () => {
    if (!confirm(`Delete ${entity.name} ${id}?`)) return;
    try {
      await ctx.api.call("DELETE", `${path}/${seg(id)}`);
      ctx.navigate(`/studio/entities/${seg(entity.name)}`);
    } catch (err) {
      clear(status);
      status.append(notice("error", (err as Error).message));
    }
  }, { class: "danger", "data-testid": "row-delete" }) : null;
  return page("view-entity-row", id ? `${entity.name} row` : `New ${entity.name}`,
    h("p", {}, link(ctx, `/studio/entities/${seg(entity.name)}`, `Back to ${entity.name}`)),
    form, del, status);
}
