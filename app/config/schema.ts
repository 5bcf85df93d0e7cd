/**
 * How a config field is declared, and what is derived from the declarations: the client file's input type,
 * the resolved type (every default filled in), the known keys, the defaults and the validation walk.
 *
 * A field is declared once, in ./fields.ts: its TypeScript type, whether it is required, its default, its
 * check, and its documentation as the JSDoc on the declaration (editors show it on the client file's field).
 * The same mapped-type technique as stacks/server/hcloud/schema.ts.
 */
import type { Checker } from "./checker.ts";
import { problem } from "./errors.ts";
import type { ProviderFacts } from "./providers.ts";

/**
 * - `required`: the client file must set it.
 * - `defaulted`: optional in the client file; the resolved environment always holds a value.
 * - `optional`: optional in both; absent means "off" (no DNS zone, no drill ping).
 */
export type Presence = "required" | "defaulted" | "optional";

/** What a field's check is given besides its value. */
export interface FieldContext {
  readonly check: Checker;
  /** The field's path in messages, e.g. `environments.prod.app.port`. */
  readonly path: string;
  /** The environment's provider, when `provider` is valid. */
  readonly facts: ProviderFacts | undefined;
  /** The values (given or default) of the fields beside this one, for rules across fields. */
  readonly siblings: Readonly<Record<string, unknown>>;
}

/** Adds at most one problem for the field (its message builder lives in ./errors.ts). */
export type Rule = (value: unknown, at: FieldContext) => void;

export type Default<T> = { readonly value: T } | { readonly byProvider: (facts: ProviderFacts) => T };

/** A field holding a value. `type` is never set: it carries the field's TypeScript type. */
export interface Value<T, P extends Presence> {
  readonly kind: "value";
  readonly presence: P;
  readonly default?: Default<T>;
  readonly check: Rule;
  readonly type?: T;
}

/** A field holding an object of fields (`app`, `backups.litestream`, …). */
export interface Section<S extends Schema, P extends Presence> {
  readonly kind: "section";
  readonly presence: P;
  readonly fields: S;
  /** For a required section: what the "is required" message says is missing and how to fix it. */
  readonly missing?: { readonly what: string; readonly fix: string };
}

export type Field = Value<unknown, Presence> | Section<Schema, Presence>;
export type Schema = { readonly [name: string]: Field };

export const field = {
  required: <T>(check: Rule): Value<T, "required"> => ({ kind: "value", presence: "required", check }),
  optional: <T>(check: Rule): Value<T, "optional"> => ({ kind: "value", presence: "optional", check }),
  defaulted: <T>(value: T, check: Rule): Value<T, "defaulted"> => ({ kind: "value", presence: "defaulted", default: { value }, check }),
  /** Defaulted to a value of the environment's provider (`ProviderFacts`). */
  byProvider: <T>(byProvider: (facts: ProviderFacts) => T, check: Rule): Value<T, "defaulted"> => ({
    kind: "value",
    presence: "defaulted",
    default: { byProvider },
    check,
  }),
};

export const section = {
  required: <S extends Schema>(fields: S, missing: { what: string; fix: string }): Section<S, "required"> => ({
    kind: "section",
    presence: "required",
    fields,
    missing,
  }),
  /** Absent means every field at its default. */
  defaulted: <S extends Schema>(fields: S): Section<S, "defaulted"> => ({ kind: "section", presence: "defaulted", fields }),
  optional: <S extends Schema>(fields: S): Section<S, "optional"> => ({ kind: "section", presence: "optional", fields }),
};

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type Is<F, P extends Presence> = F extends { readonly presence: P } ? true : false;
type InputOf<F> = F extends Section<infer S, Presence> ? Input<S> : F extends Value<infer T, Presence> ? T : never;
type ResolvedOf<F> = F extends Section<infer S, Presence> ? Resolved<S> : F extends Value<infer T, Presence> ? T : never;

/** What a client file writes: required fields required, every other one optional. */
export type Input<S extends Schema> = Simplify<
  { readonly [K in keyof S as Is<S[K], "required"> extends true ? K : never]: InputOf<S[K]> } & {
    readonly [K in keyof S as Is<S[K], "required"> extends true ? never : K]?: InputOf<S[K]>;
  }
>;

/** What validation returns: every field present except the `optional` ones. */
export type Resolved<S extends Schema> = Simplify<
  { readonly [K in keyof S as Is<S[K], "optional"> extends true ? never : K]: ResolvedOf<S[K]> } & {
    readonly [K in keyof S as Is<S[K], "optional"> extends true ? K : never]?: ResolvedOf<S[K]>;
  }
>;

/** A field's default for an environment of the given provider; undefined when it has none. */
export function defaultOf(value: Value<unknown, Presence>, facts: ProviderFacts | undefined): unknown {
  const d = value.default;
  if (d === undefined) return undefined;
  if ("value" in d) return d.value;
  return facts ? d.byProvider(facts) : undefined;
}

const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

/**
 * Checks one object of fields and returns it with the defaults filled in. Unknown keys first, then each field
 * in declaration order (a section's own fields where it is declared). Problems go to `check`; the result is
 * used only when there are none.
 */
export function resolveSection<S extends Schema>(
  schema: S,
  given: object,
  path: string,
  context: { readonly check: Checker; readonly facts: ProviderFacts | undefined },
): Resolved<S> {
  const { check, facts } = context;
  const input = given as Record<string, unknown>;
  check.knownKeys(path, input, Object.keys(schema));
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(schema)) {
    if (f.kind !== "value") continue;
    const value = input[name] === null ? undefined : (input[name] ?? defaultOf(f, facts));
    if (value !== undefined) values[name] = value;
  }
  for (const [name, f] of Object.entries(schema)) {
    const at = join(path, name);
    // `null` is no value (a plain-JS file's way of saying "unset"): named, never taken as the default.
    if (input[name] === null) {
      check.add(at, problem.isNull(f.presence === "required" ? "set it (see app/clients/example.ts)" : "leave the field out to take its default"));
      continue;
    }
    if (f.kind === "value") {
      if (values[name] !== undefined || f.presence === "required") f.check(values[name], { check, path: at, facts, siblings: values });
      continue;
    }
    const resolved = resolveSubsection(f, input[name], at, context);
    if (resolved !== undefined) values[name] = resolved;
  }
  // In declaration order, fields left unset (optional, not given) left out.
  return Object.fromEntries(Object.keys(schema).filter((name) => values[name] !== undefined).map((name) => [name, values[name]])) as Resolved<S>;
}

function resolveSubsection(
  f: Section<Schema, Presence>,
  given: unknown,
  path: string,
  context: { readonly check: Checker; readonly facts: ProviderFacts | undefined },
): object | undefined {
  const isObject = typeof given === "object" && given !== null && !Array.isArray(given);
  if (f.presence === "required" && !isObject) {
    context.check.add(path, problem.missing(f.missing?.what ?? "an object", f.missing?.fix ?? "see app/clients/example.ts"));
    return undefined;
  }
  if (given === undefined) return f.presence === "defaulted" ? resolveSection(f.fields, {}, path, context) : undefined;
  if (!isObject) {
    context.check.add(path, problem.notObject(given, Object.keys(f.fields)));
    return undefined;
  }
  return resolveSection(f.fields, given, path, context);
}

/** Every value field below `schema`, with its path of names (`["backups", "litestream", "retention"]`). */
export function valueFields(schema: Schema, path: readonly string[] = []): { path: string[]; field: Value<unknown, Presence> }[] {
  return Object.entries(schema).flatMap(([name, f]) =>
    f.kind === "value" ? [{ path: [...path, name], field: f }] : valueFields(f.fields, [...path, name]),
  );
}

/** Every section below `schema`, with its path of names. */
export function sectionPaths(schema: Schema, path: readonly string[] = []): string[][] {
  return Object.entries(schema).flatMap(([name, f]) =>
    f.kind === "section" ? [[...path, name], ...sectionPaths(f.fields, [...path, name])] : [],
  );
}
