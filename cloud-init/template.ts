import { readFileSync } from "node:fs";
import { join } from "node:path";

export const TEMPLATES_DIR = join(import.meta.dirname, "templates");

/** A value substituted into a template. */
export type TemplateValue = string | number;

/**
 * Fills `{{name}}` placeholders in `cloud-init/templates/<relPath>`. Strict both ways: a placeholder with
 * no value is an error (a typo must not land on a server as an empty setting). `{{config.<field path>}}` is
 * a field of the client file, resolved (`templateValues` flattens them), so a new field needs no value of its
 * own. Layout paths stay flat names (`{{dbFile}}`): the labs override those to keep off the real paths.
 */
export function renderTemplate(
  relPath: string,
  values: Readonly<Record<string, TemplateValue>>,
  quote: (value: string, name: string) => string = (v) => v,
): string {
  const text = readFileSync(join(TEMPLATES_DIR, relPath), "utf8");
  const missing = new Set<string>();
  const out = text.replace(/\{\{([A-Za-z0-9_.]+)\}\}/g, (_, name: string) => {
    if (!(name in values)) {
      missing.add(name);
      return "";
    }
    return quote(String(values[name]), `${relPath}: {{${name}}}`);
  });
  if (missing.size > 0) {
    throw new Error(`template ${relPath}: no value for ${[...missing].map((m) => `{{${m}}}`).join(", ")}`);
  }
  return out;
}

/**
 * The string, number and boolean leaves of `object` as `prefix.key.subkey` values (arrays are left out: a
 * template takes lists from a value built for it).
 */
export function flattenValues(prefix: string, object: object): Record<string, TemplateValue> {
  const out: Record<string, TemplateValue> = {};
  for (const [key, value] of Object.entries(object)) {
    const name = `${prefix}.${key}`;
    if (typeof value === "string" || typeof value === "number") out[name] = value;
    else if (typeof value === "boolean") out[name] = String(value);
    else if (value && typeof value === "object" && !Array.isArray(value)) Object.assign(out, flattenValues(name, value));
  }
  return out;
}

/**
 * Quotes a value for a file that is both sourced by bash and read by systemd's EnvironmentFile=:
 * plain words stay bare; anything else goes in single quotes (values never contain a single quote —
 * validation and the Terraform variables' own checks refuse them).
 */
export function envQuote(value: string, name = "a value"): string {
  if (/^[A-Za-z0-9_.\/:@+=,%-]*$/.test(value) && value !== "") return value;
  // The value is never part of the message: it may be a secret, and messages reach terminals and CI logs.
  if (value.includes("'")) throw new Error(`${name} contains a single quote ('), which an environment file cannot hold; change that value`);
  return `'${value}'`;
}
