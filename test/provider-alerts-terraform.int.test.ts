/**
 * The Slack webhook variable of DigitalOcean's alerts (alert_slack_webhook_url, stacks/server/digitalocean.ts):
 * Terraform itself runs its validation (terraform console evaluates variables before anything else, offline).
 * Where neither terraform nor tofu is on PATH the suite fails saying so, as test/terraform-judge.int.test.ts does.
 * (Terraform 1.11's refusal quotes the refused value, sensitive or not: a mistyped real URL shows in that message.)
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SLACK_URL_VARIABLE } from "../stacks/server/digitalocean.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { synthesize } from "./support/synth.ts";

const TERRAFORM = ["terraform", "tofu"].find((bin) => spawnSync(bin, ["version"], { encoding: "utf8" }).status === 0);
let dir: string;

beforeAll(() => {
  if (!TERRAFORM) throw new Error("neither terraform nor tofu is on PATH: NOT RUN; install one to run Terraform's own checks");
  const prod = shippedEnvironment("example-prod");
  const { json } = synthesize({ ...prod, alerts: { ...prod.alerts, slackChannel: "#ops" } });
  dir = mkdtempSync(join(tmpdir(), "kit-slack-var-"));
  // Only the variable: Terraform evaluates it without any provider.
  writeFileSync(join(dir, "main.tf.json"), JSON.stringify({ variable: { [SLACK_URL_VARIABLE]: json.variable[SLACK_URL_VARIABLE] } }));
});
afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

test.each<[string, string, boolean]>([
  ["a Slack incoming-webhook URL", "https://hooks.slack.com/services/T000/B000/XXXX", true],
  ["plain http", "http://hooks.slack.com/services/T000/B000/XXXX", false],
  ["another host (DigitalOcean posts only to Slack)", "https://hooks.example.com/services/T000", false],
  ["a space", "https://hooks.slack.com/services/T000 B000", false],
  ["a newline", "https://hooks.slack.com/services/T000\nB000", false],
  ["empty", "", false],
])("%s: accepted %s", (_what, value, accepted) => {
  const result = spawnSync(TERRAFORM!, ["console", "-var", `${SLACK_URL_VARIABLE}=${value}`], {
    cwd: dir,
    input: "1\n",
    encoding: "utf8",
    env: { ...process.env, CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1", TF_CLI_CONFIG_FILE: "/dev/null" },
  });
  const stderr = result.stderr.replace(/\u001b\[[0-9;]*m/g, "").replace(/\s*│\s*/g, " ");
  expect({ refused: stderr.includes("Invalid value for variable"), status: result.status }).toEqual({ refused: !accepted, status: 0 });
  if (!accepted) expect(stderr).toContain("The Slack webhook URL must be an https://hooks.slack.com/… incoming-webhook URL.");
});
