/**
 * Terraform itself judges what it can without a cloud (no provider can be downloaded here): `terraform fmt` on
 * the `--hcl` output of every shipped stack (`fmt -check` alone fails on cdktf's writer, which quotes every
 * whole-value reference; the test proves that is all fmt would change), and `terraform console` evaluating each expression the
 * stacks emit for Terraform to run — the secret, alert URL and Slack webhook variables' `validation` conditions against good and bad
 * values, and every function call in the synthesized JSON (the user data's `base64encode`) with its references
 * given literal values. Where neither `terraform` nor `tofu` is on PATH the suite says so plainly and fails:
 * it never passes without having run.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALERT_URL_VARIABLES } from "../app/config/fields.ts";
import { REPO_ROOT, shippedEnvironment, shippedEnvironments } from "../lab/environments.ts";
import { SLACK_URL_VARIABLE } from "../stacks/server/digitalocean.ts";
import { synthesize } from "./support/synth.ts";

/** terraform, else tofu (the same CLI for these commands). */
const TERRAFORM = ["terraform", "tofu"].find((bin) => spawnSync(bin, ["version"], { encoding: "utf8" }).status === 0);
const cli = (args: string[], cwd: string) =>
  spawnSync(TERRAFORM!, args, { cwd, encoding: "utf8", env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1", TF_CLI_CONFIG_FILE: "/dev/null" } });

/** Terraform's output without its colours. */
const plain = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "");

let dir: string;
/** stack name → its cdk.tf (HCL) and cdk.tf.json, as `cdktf synth --hcl` and `cdktf synth` write them. */
const stacks = new Map<string, { hcl: string; json: Record<string, any> }>();

beforeAll(() => {
  if (!TERRAFORM) {
    // eslint-disable-next-line no-console
    console.log("terraform-judge: NOT RUN — neither terraform nor tofu is on PATH; install one to run Terraform's own checks");
    return;
  }
  dir = mkdtempSync(join(tmpdir(), "kit-terraform-"));
  // The real CLI, as a developer runs it: only `cdktf synth --hcl` writes HCL (the library's App writes JSON).
  const credentialFree = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|DIGITALOCEAN_|HCLOUD_|TF_VAR_)/.test(k)));
  for (const [out, extra] of [["hcl", ["--hcl"]], ["json", []]] as const) {
    const result = spawnSync(join(REPO_ROOT, "node_modules", ".bin", "cdktf"), ["synth", ...extra, "--output", join(dir, out)], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      env: { ...credentialFree, CHECKPOINT_DISABLE: "1" },
    });
    if (result.status !== 0) throw new Error(`cdktf synth ${extra.join(" ")} failed: ${result.stdout}${result.stderr}`);
  }
  for (const name of readdirSync(join(dir, "hcl", "stacks"))) {
    stacks.set(name, {
      hcl: readFileSync(join(dir, "hcl", "stacks", name, "cdk.tf"), "utf8"),
      json: JSON.parse(readFileSync(join(dir, "json", "stacks", name, "cdk.tf.json"), "utf8")),
    });
  }
}, 240_000);
afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

test("terraform or tofu is on PATH (CI and dev machines have terraform 1.x)", () => {
  expect(TERRAFORM).toBeDefined();
  expect(stacks.size).toBe(shippedEnvironments().length);
});

test("`terraform fmt` parses the --hcl output of every shipped stack, and would change only cdktf's interpolation-only strings", () => {
  // cdktf's HCL writer quotes every reference ("${aws_s3_bucket.x.id}"); fmt rewrites those to the bare
  // reference (the same value since Terraform 0.12). Anything else it would change is a formatting fault.
  for (const [name, { hcl }] of stacks) {
    const result = spawnSync(TERRAFORM!, ["fmt", "-"], { input: hcl, encoding: "utf8", env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_CLI_CONFIG_FILE: "/dev/null" } });
    expect({ name, status: result.status, stderr: plain(result.stderr) }).toEqual({ name, status: 0, stderr: "" });
    const [before, after] = [hcl.trimEnd().split("\n"), result.stdout.trimEnd().split("\n")];
    expect(after).toHaveLength(before.length);
    // Every line fmt changes is `name = "${…}"` becoming `name = …`: same attribute, same place, unquoted.
    const changed = before.map((line, i) => [line, after[i]] as const).filter(([a, b]) => a !== b);
    const unwrapped = ([a, b]: readonly [string, string]) => {
      const match = /^(\s*[A-Za-z0-9_]+\s*=\s*)"\$\{(.*)\}"$/.exec(a);
      return match !== null && b.startsWith(match[1]) && !b.slice(match[1].length).startsWith('"');
    };
    expect({ name, other: changed.filter((pair) => !unwrapped(pair)).slice(0, 5) }).toEqual({ name, other: [] });
  }
});

/** A directory holding only `variables` of a stack, so Terraform evaluates them without any provider. */
function variablesOnly(stack: string, variables: Record<string, unknown>): string {
  const at = join(dir, "vars", stack);
  mkdirSync(at, { recursive: true });
  writeFileSync(join(at, "main.tf.json"), JSON.stringify({ variable: variables }, null, 2));
  return at;
}

/**
 * Gives `value` to each variable `pick` selects in every shipped stack, through terraform console: it evaluates
 * the variables (and their validation) before it reads expressions, reports a refused value on stderr and still
 * exits 0. A refusal must say `refusal(name)`. `from`: other stacks than the shipped ones. Returns how many variables it checked.
 */
function validate(
  pick: (name: string) => boolean,
  value: string,
  accepted: boolean,
  refusal: (name: string) => string,
  from: ReadonlyMap<string, { json: Record<string, any> }> = stacks,
): number {
  let checked = 0;
  for (const [stack, { json }] of from) {
    for (const [name, variable] of Object.entries(json.variable ?? {}).filter(([name]) => pick(name))) {
      const result = cli(["console", "-var", `${name}=${value}`], variablesOnly(stack, { [name]: variable }));
      const stderr = plain(result.stderr);
      expect({ stack, name, status: result.status, refused: stderr.includes("Invalid value for variable") }).toEqual({ stack, name, status: 0, refused: !accepted });
      // Terraform wraps its message at the box's edge.
      if (accepted) expect(stderr).toBe("");
      else expect(stderr.replace(/\s*│\s*/g, " ")).toContain(refusal(name));
      checked++;
    }
  }
  return checked;
}

describe("the secret variables' validation, run by Terraform", () => {
  test.each<[string, string, boolean]>([
    ["a one-line value", "s3cr3t-Value_with=signs", true],
    ["a value with a typographic apostrophe", "it’s", true],
    ["a single quote", "it's", false],
    ["a newline", "line1\nline2", false],
    ["a carriage return", "line1\rline2", false],
  ])("%s: %s", (_name, value, accepted) => {
    expect(validate((name) => name.startsWith("secret_"), value, accepted, () => "Secret values must be one line without single quotes")).toBeGreaterThan(0);
  });
});

describe("the Slack webhook variable of DigitalOcean's alerts (alert_slack_webhook_url), run by Terraform", () => {
  // The shipped clients post to no Slack channel: example-prod with one.
  const prod = shippedEnvironment("example-prod");
  const withSlack = new Map([["example-prod+slack", synthesize({ ...prod, alerts: { ...prod.alerts, slackChannel: "#ops" } })]]);
  test.each<[string, string, boolean]>([
    ["a Slack incoming-webhook URL", "https://hooks.slack.com/services/T000/B000/XXXX", true],
    ["plain http", "http://hooks.slack.com/services/T000/B000/XXXX", false],
    ["another host (DigitalOcean posts only to Slack)", "https://hooks.example.com/services/T000", false],
    ["a space", "https://hooks.slack.com/services/T000 B000", false],
    ["a newline", "https://hooks.slack.com/services/T000\nB000", false],
    ["empty", "", false],
  ])("%s: %s", (_what, value, accepted) => {
    const refusal = () => "The Slack webhook URL must be an https://hooks.slack.com/… incoming-webhook URL.";
    expect(validate((name) => name === SLACK_URL_VARIABLE, value, accepted, refusal, withSlack)).toBe(1);
  });
});

describe("the alert URL variables' validation, run by Terraform", () => {
  const alertVariables: readonly string[] = Object.values(ALERT_URL_VARIABLES);
  test.each<[string, string, boolean]>([
    ["a dead-man URL", "https://hc-ping.com/0b4d8c1e-5f1a-4a6e-9d61-2f7c1e0a9b3c", true],
    ["a Slack webhook URL", "https://hooks.slack.com/services/T000/B000/XXXX", true],
    ["a percent-encoded quote", "https://example.com/it%27s", true],
    ["plain http", "http://hc-ping.com/x", false],
    ["a space", "https://hc-ping.com/a b", false],
    ["a single quote", "https://hc-ping.com/it's", false],
    ["a double quote", 'https://hc-ping.com/a"b', false],
    ["a backslash", "https://hc-ping.com/a\\b", false],
    ["a newline", "https://hc-ping.com/a\nb", false],
  ])("%s: %s", (_name, value, accepted) => {
    const refusal = (name: string) => `${name} must be an https:// URL on one line without spaces, quotes or backslashes`;
    // example-prod configures both.
    expect(validate((name) => alertVariables.includes(name), value, accepted, refusal)).toBeGreaterThanOrEqual(2);
  });
});

/** Every `${…}` in the synthesized JSON that calls a function. */
function functionCalls(json: unknown): string[] {
  const text = JSON.stringify(json);
  const found = new Set<string>();
  for (const match of text.matchAll(/\$\{((?:[^{}]|\{[^{}]*\})*)\}/g)) {
    const expression = JSON.parse(`"${match[1]}"`) as string;
    if (/\b[a-z][a-z0-9_]*\(/.test(expression)) found.add(expression);
  }
  return [...found];
}

/** References (`var.x`, `aws_iam_access_key.k.secret`, `data.x.y.z`) replaced by string literals naming them. */
const withLiterals = (expression: string) =>
  expression.replace(/\b(?:data\.)?(?:var|[a-z][a-z0-9_]*\.[A-Za-z0-9_-]+)\.[A-Za-z0-9_.-]+|\bvar\.[A-Za-z0-9_]+/g, (ref) => JSON.stringify(`<${ref}>`));

test("every function call the stacks emit evaluates in terraform console (references given literal values)", () => {
  const empty = join(dir, "empty");
  mkdirSync(empty, { recursive: true });
  const calls = [...new Set([...stacks.values()].flatMap(({ json }) => functionCalls(json)))];
  expect(calls.length).toBeGreaterThan(0);
  let decoded = 0;
  for (const call of calls) {
    const literal = withLiterals(call);
    const result = spawnSync(TERRAFORM!, ["console"], { cwd: empty, input: `${literal}\n`, encoding: "utf8", env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_CLI_CONFIG_FILE: "/dev/null" } });
    expect({ call: call.slice(0, 120), status: result.status, stderr: plain(result.stderr) }).toEqual({ call: call.slice(0, 120), status: 0, stderr: "" });
    // base64encode gives back what it was given: what the server decodes is the file as rendered.
    const b64 = /^base64encode\((.*)\)$/s.exec(literal);
    if (b64) {
      const roundTrip = spawnSync(TERRAFORM!, ["console"], { cwd: empty, input: `base64decode(${literal}) == ${b64[1]}\n`, encoding: "utf8", env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_CLI_CONFIG_FILE: "/dev/null" } });
      expect({ call: call.slice(0, 120), out: roundTrip.stdout.trim() }).toEqual({ call: call.slice(0, 120), out: "true" });
      decoded++;
    }
  }
  // The user data's secret files (s3.env, secrets.env) are among them.
  expect(decoded).toBeGreaterThanOrEqual(2);
});
