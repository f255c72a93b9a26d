/** What every view gets, and the list of views (their paths under /studio/ and test ids). */
import type { Api } from "./api.ts";
import type { EntityInfo } from "./schema.ts";

export interface ViewContext {
  api: Api;
  /** The path segments after the view's own (e.g. ["Todo", "abc"] for /studio/entities/Todo/abc). */
  rest: string[];
  entities: EntityInfo[];
  navigate: (path: string) => void;
  /** Called when the view is left: stop polling, close streams. */
  onLeave: (f: () => void) => void;
}

export type View = (ctx: ViewContext) => Promise<HTMLElement> | HTMLElement;

export interface ViewEntry {
  path: string;
  label: string;
  testid: string;
  load: () => Promise<View>;
}

/** Where each view lives; the nav is built from this in this order. */
export function parseRoute(pathname: string): { view: string; rest: string[] } {
  const parts = pathname.replace(/^\/studio\/?/, "").split("/").filter((p) => p !== "").map(safeDecode);
  return { view: parts[0] ?? "", rest: parts.slice(1) };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
