/**
 * An entity's fields as the manifest (`GET /api/manifest`) declares them, and the
 * conversion of what a person types into the JSON value of the field's type, so the
 * editor and the filters send what the host accepts (`INVALID_VALUE` otherwise).
 */
export interface FieldInfo {
  name: string;
  type: string;
  optional: boolean;
  unique: boolean;
}

export interface EntityInfo {
  name: string;
  fields: FieldInfo[];
}

/** The entities of a manifest document; unknown shapes give an empty list. */
export function entitiesOf(manifest: unknown): EntityInfo[] {
  const list = (manifest as { entities?: unknown } | null)?.entities;
  if (!Array.isArray(list)) return [];
  return list
    .filter((e): e is { name: string; fields?: unknown } => typeof e?.name === "string")
    .map((e) => ({
      name: e.name,
      fields: (Array.isArray(e.fields) ? e.fields : [])
        .filter((f: { name?: unknown }) => typeof f?.name === "string")
        .map((f: { name: string; type?: unknown; optional?: unknown; unique?: unknown }) => ({
          name: f.name,
          type: typeof f.type === "string" ? f.type : "string",
          optional: f.optional === true,
          unique: f.unique === true,
        })),
    }));
}

/** The storage kind behind a field type: what a typed-in value becomes. */
export function kindOf(type: string): "int" | "float" | "bool" | "text" {
  if (type === "int") return "int";
  if (type === "float") return "float";
  if (type === "bool") return "bool";
  return "text";
}

/** The result of reading one typed-in value. */
export type Parsed = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * Reads `text` as a value of `field`: an empty input is null for an optional field (and
 * refused for a required one); numbers and booleans must parse exactly.
 */
export function parseValue(field: Pick<FieldInfo, "name" | "type" | "optional">, text: string): Parsed {
  const t = text.trim();
  if (t === "" && kindOf(field.type) !== "text") {
    return field.optional ? { ok: true, value: null } : { ok: false, message: `${field.name} is required` };
  }
  switch (kindOf(field.type)) {
    case "int":
      if (!/^-?\d+$/.test(t) || !Number.isSafeInteger(Number(t))) return { ok: false, message: `${field.name} needs a whole number` };
      return { ok: true, value: Number(t) };
    case "float": {
      const n = Number(t);
      if (!Number.isFinite(n)) return { ok: false, message: `${field.name} needs a number` };
      return { ok: true, value: n };
    }
    case "bool":
      if (t === "true") return { ok: true, value: true };
      if (t === "false") return { ok: true, value: false };
      return { ok: false, message: `${field.name} needs true or false` };
    default:
      if (text === "" && field.optional) return { ok: true, value: null };
      return { ok: true, value: text };
  }
}

/** A stored value as the text an input shows for it (the inverse of `parseValue`). */
export function inputText(v: unknown): string {
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * The body of an insert or a patch from a form's texts: only the fields given (a patch
 * sends the changed ones), each parsed; the first problem instead when one is wrong.
 */
export function rowFromForm(fields: readonly FieldInfo[], texts: Record<string, string>): { ok: true; row: Record<string, unknown> } | { ok: false; message: string } {
  const row: Record<string, unknown> = {};
  for (const f of fields) {
    if (!(f.name in texts)) continue;
    const p = parseValue(f, texts[f.name]);
    if (!p.ok) return p;
    row[f.name] = p.value;
  }
  return { ok: true, row };
}
