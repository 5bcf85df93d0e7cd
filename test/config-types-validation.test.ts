/**
 * Every declared field (app/config/fields.ts), tried with each kind of value it does not take — as a new user
 * or a plain-JS client file would write it: each is a listed problem at the field's path naming the value,
 * never a stack trace and never silently accepted. Likewise every required field left out and an unknown key
 * in every section. The nearest good input is the example environment itself, which passes.
 */
import example from "../app/clients/example.ts";
import { ENVIRONMENT } from "../app/config/fields.ts";
import { sectionPaths, valueFields } from "../app/config/schema.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import { FILE, problemsOf } from "./support/problems.ts";

/** The example's prod environment with every optional field set too, so each field has a good value. */
const full = {
  ...example.environments.prod,
  drill: { onCalendar: "monthly", pingUrl: "https://hc-ping.com/5f1c" },
} as EnvironmentConfig;
const client = (env: unknown): ClientConfig => ({ slug: "acme", environments: { prod: env as EnvironmentConfig } });

const kindOf = (value: unknown) => (value === null ? "null" : Array.isArray(value) ? "array" : typeof value);
const SAMPLES: Record<string, unknown> = { null: null, number: 42, string: "x", boolean: true, array: ["x"], object: { x: 1 } };

const get = (object: unknown, path: readonly string[]): unknown => path.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], object);
/** A copy of `object` with `path` set to `value` (or removed, when `value` is undefined). */
function set(object: unknown, path: readonly string[], value: unknown): unknown {
  const [head, ...rest] = path;
  const copy = { ...(object as Record<string, unknown>) };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
  } else copy[head] = set(copy[head] ?? {}, rest, value);
  return copy;
}

const fields = valueFields(ENVIRONMENT);

test("the good input: the example environment with every optional field set passes", () => {
  expect(problemsOf(client(full))).toEqual([]);
});

/** The kind a field takes: from its value in `full`, else from its default. */
function goodKind(path: readonly string[], field: (typeof fields)[number]["field"]): string {
  const given = get(full, path);
  if (given !== undefined) return kindOf(given);
  const d = field.default;
  if (d && "value" in d) return kindOf(d.value);
  return "string"; // size, image: provider slugs
}

const cases = fields.flatMap(({ path, field }) =>
  Object.entries(SAMPLES)
    .filter(([kind]) => kind !== goodKind(path, field))
    .map(([kind, value]) => [path.join("."), kind, value, path] as const),
);

test.each(cases)("%s given a %s: a problem at its path naming the value, not a stack trace", (dotted, _kind, value, path) => {
  let problems: string[] = [];
  expect(() => (problems = problemsOf(client(set(full, path, value))))).not.toThrow();
  const at = `${FILE}: environments.prod.${dotted}`;
  const mine = problems.filter((p) => p.startsWith(`${at}:`) || p.startsWith(`${at}[`) || p.startsWith(`${at}.`));
  expect(mine).not.toEqual([]);
  // The value is shown (JSON), so the reader sees what they wrote.
  expect(mine.some((p) => p.includes(JSON.stringify(value).slice(0, 20)) || p.includes("is required"))).toBe(true);
});

const required = fields.filter(({ field }) => field.presence === "required").map(({ path }) => [path.join("."), path] as const);

test.each(required)("%s left out: named as required, with the fix", (dotted, path) => {
  const problems = problemsOf(client(set(full, path, undefined)));
  expect(problems).toEqual([expect.stringMatching(new RegExp(`^${FILE}: environments\\.prod\\.${dotted.replace(/\./g, "\\.")}: (is required: |must list at least one ).*Fix: `))]);
});

const sections = [[], ...sectionPaths(ENVIRONMENT)].map((path) => [path.join(".") || "(environment)", path] as const);

test.each(sections)("%s: an unknown key is named as a typo with the known fields", (_name, path) => {
  const withExtra = path.length === 0 ? { ...full, extraField: 1 } : set(full, path, { ...((get(full, path) as object) ?? {}), extraField: 1 });
  const at = ["environments", "prod", ...path, "extraField"].join(".");
  expect(problemsOf(client(withExtra))).toEqual([expect.stringContaining(`${FILE}: ${at}: unknown field "extraField" — a typo? Known fields: `)]);
});
