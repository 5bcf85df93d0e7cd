/**
 * alerts.emails and alerts.slackChannel (DigitalOcean's own alerts, stacks/server/digitalocean.ts): each refusal
 * names the path, the value and the fix, and comes with the nearest input that passes.
 */
import example from "../app/clients/example.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import exampleHetzner from "../app/clients/example-hetzner.ts";
import { FILE, problemsOf } from "./support/problems.ts";

const validEnv: EnvironmentConfig = example.environments.prod;
const withAlerts = (alerts: Record<string, unknown>, base: EnvironmentConfig = validEnv): ClientConfig => ({
  slug: "acme",
  environments: { prod: { ...base, alerts } as EnvironmentConfig },
});
const at = (path: string) => `${FILE}: environments.prod.alerts.${path}: `;

describe("alerts.emails", () => {
  test.each<[string, unknown, unknown, string]>([
    ["not a list", "ops@agency.example", ["ops@agency.example"], `${at("emails")}"ops@agency.example" must be a list of e-mail addresses. Fix: emails: ["ops@agency.example"]`],
    ["no @", ["ops.agency.example"], ["ops@agency.example"], `${at("emails[0]")}"ops.agency.example" is not an e-mail address (for example "ops@agency.example")`],
    ["a display name", ["Ops <ops@agency.example>"], ["ops@agency.example"], `${at("emails[0]")}"Ops <ops@agency.example>" is not an e-mail address`],
    ["no top-level domain", ["ops@localhost"], ["ops@localhost.example"], `${at("emails[0]")}"ops@localhost" is not an e-mail address`],
    ["a space", ["ops @agency.example"], ["ops@agency.example"], `${at("emails[0]")}"ops @agency.example" is not an e-mail address`],
    ["two dots", ["ops..team@agency.example"], ["ops.team@agency.example"], `${at("emails[0]")}"ops..team@agency.example" is not an e-mail address`],
    ["a trailing dot before @", ["ops.@agency.example"], ["ops@agency.example"], `${at("emails[0]")}"ops.@agency.example" is not an e-mail address`],
    ["not a string", [42], ["ops+alerts@agency.example"], `${at("emails[0]")}42 is not an e-mail address`],
    ["the same address twice (any case)", ["ops@agency.example", "OPS@agency.example"], ["ops@agency.example", "dev@agency.example"], `${at("emails[1]")}"OPS@agency.example" is already listed at environments.prod.alerts.emails[0]; list each address once`],
  ])("%s is refused; the nearest good value passes", (_what, bad, good, message) => {
    const problems = problemsOf(withAlerts({ emails: bad }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(message);
    expect(problemsOf(withAlerts({ emails: good }))).toEqual([]);
  });

  test("every bad address in a list is named, each by its index", () => {
    expect(problemsOf(withAlerts({ emails: ["a@b.example", "nope", "also nope"] }))).toEqual([
      `${at("emails[1]")}"nope" is not an e-mail address (for example "ops@agency.example")`,
      `${at("emails[2]")}"also nope" is not an e-mail address (for example "ops@agency.example")`,
    ]);
  });

  test("left out it is an empty list (no provider alerts); null is refused like any other field", () => {
    expect(problemsOf(withAlerts({}))).toEqual([]);
    expect(problemsOf(withAlerts({ emails: null }))).toEqual([expect.stringContaining(`${at("emails")}null is not a value here`)]);
  });
});

describe("alerts.slackChannel", () => {
  test.each<[string, unknown, string]>([
    ["a URL (the webhook URL is a secret: TF_VAR_alert_slack_webhook_url)", "https://hooks.slack.com/services/T0/B0/x", "#ops"],
    ["upper case", "#Ops", "#ops"],
    ["a space", "#ops alerts", "#ops-alerts"],
    ["empty", "", "ops"],
    ["longer than Slack allows", `#${"a".repeat(81)}`, `#${"a".repeat(80)}`],
    ["not a string", 7, "#ops_7"],
  ])("%s is refused; the nearest good value passes", (_what, bad, good) => {
    // Messages shorten a value past 80 characters, as app/config/errors.ts does.
    const shown = JSON.stringify(bad).length > 80 ? `${JSON.stringify(bad).slice(0, 77)}…` : JSON.stringify(bad);
    expect(problemsOf(withAlerts({ slackChannel: bad }))).toEqual([
      `${at("slackChannel")}${shown} must be a Slack channel name (lowercase letters, digits, - and _, up to 80) (for example "#ops")`,
    ]);
    expect(problemsOf(withAlerts({ slackChannel: good }))).toEqual([]);
  });
});

describe("on Hetzner (no provider alerts there)", () => {
  test("the same fields are accepted, not refused: the watcher and the dead-man URL are the signals there", () => {
    const hetznerEnv = exampleHetzner.environments.prod as EnvironmentConfig;
    expect(problemsOf(withAlerts({ emails: ["ops@agency.example"], slackChannel: "#ops" }, hetznerEnv))).toEqual([]);
  });
});
