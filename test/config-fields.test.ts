/**
 * The field declarations (app/config/fields.ts) and the reference client (app/clients/example.ts) agree:
 * the example mentions every declared field, each with its real default, and its commented-out lines
 * name only fields that exist. The resolver fills in exactly the declared defaults.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AGENCY } from "../app/agency.ts";
import example from "../app/clients/example.ts";
import { ENVIRONMENT } from "../app/config/fields.ts";
import { loadEnvironments } from "../app/config/load.ts";
import { PROVIDERS, type ProviderFacts } from "../app/config/providers.ts";
import { defaultOf, sectionPaths, valueFields, type Schema } from "../app/config/schema.ts";
import { FILE } from "./support/problems.ts";
import { REPO_ROOT } from "../lab/environments.ts";

const EXAMPLE_FILE = join(REPO_ROOT, "app", "clients", "example.ts");
const EXAMPLE_TEXT = readFileSync(EXAMPLE_FILE, "utf8");
const EXAMPLE_FACTS = PROVIDERS[example.environments.prod.provider] as ProviderFacts;

/** A default as the example writes it: `"1s"`, `8000`, `false`, `[]`, `["a"]`, `{}`. */
function literal(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(literal).join(", ")}]`;
  if (typeof value === "object" && value !== null && Object.keys(value).length === 0) return "{}";
  throw new Error(`no literal form for the default ${JSON.stringify(value)}: extend literal() in this test`);
}

/** Commented-out fields (`// port: 8000, …`) read as code; prose comments stay comments. */
const uncomment = (text: string) => text.replace(/^(\s*)\/\/ (?=[A-Za-z]\w*: )/gm, "$1");

/** The `{ … }` after each `name:` in `span`, braces balanced. */
function sectionSpans(span: string, name: string): string[] {
  const spans: string[] = [];
  for (const match of span.matchAll(new RegExp(`\\b${name}: \\{`, "g"))) {
    const start = match.index + match[0].length - 1;
    let depth = 0;
    for (let i = start; i < span.length; i++) {
      if (span[i] === "{") depth++;
      else if (span[i] === "}" && --depth === 0) {
        spans.push(span.slice(start, i + 1));
        break;
      }
    }
  }
  return spans;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * What `text` fails to say about the fields of `schema`: one line per field it does not mention (inside its
 * sections), or mentions without its default — as a value (`port: 8000`) or in a comment on the field's line
 * (`secrets: ["SESSION_SECRET"], // default: []`).
 */
function unmentioned(text: string, schema: Schema, facts: ProviderFacts): string[] {
  const code = uncomment(text);
  return valueFields(schema).flatMap(({ path, field }) => {
    const name = path[path.length - 1];
    const spans = path.slice(0, -1).reduce((outer, section) => outer.flatMap((span) => sectionSpans(span, section)), [code]);
    const shown = path.join(".");
    if (!spans.some((span) => new RegExp(`\\b${name}: `).test(span))) return [`${shown}: not mentioned`];
    if (field.presence !== "defaulted") return [];
    const value = literal(defaultOf(field, facts));
    const asValue = new RegExp(`\\b${name}: ${escape(value)}(?![\\w.])`);
    const asComment = new RegExp(`\\b${name}: .*// default: ${escape(value)}(?![\\w.])`);
    return spans.some((span) => asValue.test(span) || asComment.test(span)) ? [] : [`${shown}: its default ${value} is not mentioned`];
  });
}

describe("the example client is the reference for every declared field", () => {
  test("it mentions every field of ENVIRONMENT, each with its real default", () => {
    expect(unmentioned(EXAMPLE_TEXT, ENVIRONMENT, EXAMPLE_FACTS)).toEqual([]);
  });

  test("its commented-out lines name only declared fields (no stale name after a rename)", () => {
    const declared = new Set([...valueFields(ENVIRONMENT), ...sectionPaths(ENVIRONMENT).map((path) => ({ path }))].map(({ path }) => path[path.length - 1]));
    const commented = [...EXAMPLE_TEXT.matchAll(/^\s*\/\/ ([A-Za-z]\w*): /gm)].map((m) => m[1]);
    expect(commented.length).toBeGreaterThan(5);
    expect(commented.filter((name) => !declared.has(name))).toEqual([]);
  });

  test("the check notices a wrong default, a missing field and a field outside its section", () => {
    expect(unmentioned(EXAMPLE_TEXT.replace("// port: 8000,", "// port: 8080,"), ENVIRONMENT, EXAMPLE_FACTS)).toEqual([
      "app.port: its default 8000 is not mentioned",
    ]);
    expect(unmentioned(EXAMPLE_TEXT.replace(/^.*privateRepo.*\n/m, ""), ENVIRONMENT, EXAMPLE_FACTS)).toEqual(["app.privateRepo: not mentioned"]);
    const outside = EXAMPLE_TEXT.replace(", keepDays: 7 }", " }").replace("// volume: { sizeGiB: 10 },", "// volume: { sizeGiB: 10 }, keepDays: 7");
    expect(unmentioned(outside, ENVIRONMENT, EXAMPLE_FACTS)).toEqual(["backups.fallback.keepDays: not mentioned"]);
  });
});

describe("defaults come from the declarations", () => {
  test("an environment that sets only the required fields resolves to every declared default", () => {
    const { provider, region, sshKeys, sshAllowedCidrs, app } = example.environments.prod;
    const [env] = loadEnvironments(AGENCY, [
      { config: { slug: "acme", environments: { prod: { provider, region, sshKeys, sshAllowedCidrs, app: { repo: app.repo } } } }, file: FILE },
    ]);
    const resolved = (path: string[]) => path.reduce<unknown>((value, name) => (value as Record<string, unknown> | undefined)?.[name], env);
    const fields = valueFields(ENVIRONMENT).filter(({ field }) => field.presence !== "required");
    expect(fields.length).toBeGreaterThan(15);
    for (const { path, field } of fields) expect([path.join("."), resolved(path)]).toEqual([path.join("."), defaultOf(field, EXAMPLE_FACTS)]);
  });
});
