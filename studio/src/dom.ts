/** A few DOM helpers: the studio builds its pages with these (no innerHTML of host data). */
import { cellText } from "./format.ts";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((e: Event) => void) | undefined>;

/** `h("button", {type: "button", onclick: f}, "Save")`: attributes, `on*` listeners, children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
}

/** A section with its heading (`h2`, focused when the view opens) and a `data-testid`. */
export function page(testid: string, title: string, ...children: Child[]): HTMLElement {
  return h("section", { "data-testid": testid, "aria-labelledby": `${testid}-title` },
    h("h2", { id: `${testid}-title`, tabindex: -1 }, title), ...children);
}

export interface Column<T> {
  key: string;
  label?: string;
  render?: (row: T) => Node | string;
  /** The header is a sort button calling this. */
  onSort?: () => void;
  sorted?: "ascending" | "descending";
}

/** A data table with a caption; rows' cells are text (never markup) unless `render` gives a node. */
export function table<T extends Record<string, unknown>>(caption: string, rows: readonly T[], columns: Column<T>[], testid?: string): HTMLElement {
  const head = h("tr", {}, ...columns.map((c) => h("th", { scope: "col", "aria-sort": c.sorted },
    c.onSort ? h("button", { type: "button", class: "link", onclick: c.onSort }, c.label ?? c.key, c.sorted ? h("span", { "aria-hidden": "true" }, c.sorted === "ascending" ? " ▲" : " ▼") : "") : c.label ?? c.key)));
  const body = rows.map((r) => h("tr", {}, ...columns.map((c) => h("td", {}, c.render ? c.render(r) : cellText(r[c.key])))));
  const t = h("table", { "data-testid": testid }, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, ...body));
  if (rows.length === 0) t.append(h("tbody", {}, h("tr", {}, h("td", { colspan: Math.max(1, columns.length) }, "Nothing here."))));
  return h("div", { class: "table-wrap" }, t);
}

/** A labelled input: the label wraps nothing, it points at the input by id. */
let nextId = 0;
export function field(label: string, input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  const id = input.id || `f${++nextId}`;
  input.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

export function select(options: { value: string; label: string }[], value?: string, attrs: Attrs = {}): HTMLSelectElement {
  const s = h("select", attrs, ...options.map((o) => h("option", { value: o.value, selected: o.value === value }, o.label)));
  if (value !== undefined) s.value = value;
  return s;
}

export function button(label: string, onclick: () => void, attrs: Attrs = {}): HTMLButtonElement {
  return h("button", { type: "button", ...attrs, onclick }, label);
}

/** A region that reports the outcome of an action to screen readers (`role=status`) or an error (`role=alert`). */
export function notice(kind: "ok" | "error", text: string): HTMLElement {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}
