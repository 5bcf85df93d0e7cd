/**
 * The watcher's alert URLs are secrets (a webhook URL grants posting; a dead-man URL lets anyone report the
 * server healthy): the client file only says which alerts are configured (alerts.deadMan, alerts.webhook),
 * the stack takes each URL as a sensitive variable (TF_VAR_alert_dead_man_url, TF_VAR_alert_webhook_url) and
 * writes it into /etc/kit/alerts.env (0600, base64 in the user data). No URL is ever in the client file or
 * in cdk.tf.json; a client file that still holds one is refused without echoing it.
 */
import { parse } from "yaml";
import example from "../app/clients/example.ts";
import { ALERT_URL_VARIABLES } from "../app/config/fields.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { renderUserData } from "../cloud-init/render.ts";
import { base64, concreteServerValues, shippedEnvironment } from "../lab/environments.ts";
import { FILE, problemsOf } from "./support/problems.ts";
import { synthesize } from "./support/synth.ts";

const withAlerts = (alerts: Record<string, unknown>): ClientConfig => ({
  slug: "acme",
  environments: { prod: { ...example.environments.prod, alerts } as EnvironmentConfig },
});
const at = (path: string) => `${FILE}: environments.prod.alerts.${path}: `;
const SECRET_URL = "https://hc-ping.com/0b4d8c1e-never-printed";

describe("the client file says which alerts are configured, never their URLs", () => {
  test.each<[string, Record<string, unknown>, Record<string, unknown>, string]>([
    ["a dead-man URL in the file", { deadManUrl: SECRET_URL }, { deadMan: true }, `${at("deadManUrl")}holds an alert URL, which is a secret: remove it from the client file (it is in git and would be in cdk.tf.json). Fix: deadMan: true here, and the URL in TF_VAR_alert_dead_man_url when you run cdktf deploy`],
    ["a webhook URL in the file", { webhookUrl: "https://hooks.slack.com/services/T0/B0/neverPrinted" }, { webhook: true }, `${at("webhookUrl")}holds an alert URL, which is a secret: remove it from the client file (it is in git and would be in cdk.tf.json). Fix: webhook: true here, and the URL in TF_VAR_alert_webhook_url when you run cdktf deploy`],
    ["a flag that is not a boolean", { deadMan: "yes" }, { deadMan: true }, `${at("deadMan")}"yes" must be true or false`],
    ["a URL given as the flag", { webhook: "https://hooks.slack.com/services/T0/B0/x" }, { webhook: false }, `${at("webhook")}`],
  ])("%s is refused, naming the path and the fix; the nearest good input passes", (_what, bad, good, message) => {
    const problems = problemsOf(withAlerts(bad));
    expect(problems.join("\n")).toContain(message);
    expect(problemsOf(withAlerts(good))).toEqual([]);
  });

  test("a refused URL is never echoed (the messages reach terminals and CI logs)", () => {
    const problems = problemsOf(withAlerts({ deadManUrl: SECRET_URL, webhookUrl: "https://hooks.slack.com/services/T0/B0/neverPrinted" }));
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join("\n")).not.toContain("0b4d8c1e");
    expect(problems.join("\n")).not.toContain("neverPrinted");
  });

  test("both flags default to false: nothing configured, no variable", () => {
    expect(shippedEnvironment("example-staging").alerts).toMatchObject({ deadMan: false, webhook: false });
    expect(Object.keys(synthesize(shippedEnvironment("example-staging")).json.variable ?? {}).filter((v) => v.startsWith("alert_"))).toEqual([]);
  });
});

describe("example-prod (both alerts configured) as synthesized", () => {
  const stack = synthesize(shippedEnvironment("example-prod"));
  const userData: string = stack.resource("digitalocean_droplet").user_data;

  test("each URL is a sensitive, non-nullable variable checked by Terraform", () => {
    for (const name of Object.values(ALERT_URL_VARIABLES)) {
      expect(stack.json.variable[name]).toMatchObject({ type: "string", sensitive: true, nullable: false });
      expect(stack.json.variable[name].validation[0].condition).toContain(`var.${name}`);
      expect(stack.json.variable[name].description).toContain(`TF_VAR_${name}`);
    }
  });

  test("alerts.env reaches the user data as a base64 of the variables' references, 0600", () => {
    const entry = parse(userData).write_files.find((f: { path: string }) => f.path === LAYOUT.alertsFile);
    expect(entry).toMatchObject({ permissions: "0600", encoding: "b64" });
    expect(entry.content).toBe(
      `\${base64encode("ALERT_DEAD_MAN_URL='\${var.alert_dead_man_url}'\\nALERT_WEBHOOK_URL='\${var.alert_webhook_url}'\\n")}`,
    );
  });

  test("no alert URL anywhere in cdk.tf.json: every https:// string is a known, non-secret kind", () => {
    const json = JSON.stringify(stack.json);
    expect(json).not.toMatch(/hc-ping\.com|hooks\.slack\.com|healthchecks\.io/);
    const urls = [...new Set(json.match(/https:\/\/[^"'\s\\]+/g) ?? [])];
    // The app's repo, the pinned downloads, the uptime check of the site's health URL, the fetcher's S3 URL and
    // the alert variables' own validation pattern: nothing else.
    const known = /^https:\/\/(github\.com\/|registry\.npmjs\.org\/|app\.example-client\.com\/|\$\$?\{?bucket|\[\^)/;
    for (const url of urls) expect({ url, known: known.test(url) }).toEqual({ url, known: true });
    expect(urls.length).toBeGreaterThan(2);
  });
});

test("on the server (concrete values): alerts.env holds the URLs, 0600, base64 in the user data, never as text", () => {
  const env = shippedEnvironment("example-prod");
  const values = concreteServerValues(env);
  const userData = renderUserData(env, values, { base64 });
  const entry = parse(userData).write_files.find((f: { path: string }) => f.path === LAYOUT.alertsFile);
  expect(entry).toMatchObject({ permissions: "0600", encoding: "b64" });
  expect(Buffer.from(entry.content, "base64").toString("utf8")).toBe(
    `ALERT_DEAD_MAN_URL=${values.alertUrls!.deadMan}\nALERT_WEBHOOK_URL=${values.alertUrls!.webhook}\n`,
  );
  expect(userData).not.toContain("testWebhookToken");
  // Not configured: the file is there with empty values (the watcher skips them), whatever URLs are passed.
  const staging = shippedEnvironment("example-staging");
  const none = parse(renderUserData(staging, concreteServerValues(staging), { base64 })).write_files.find((f: { path: string }) => f.path === LAYOUT.alertsFile);
  expect(Buffer.from(none.content, "base64").toString("utf8")).toBe("ALERT_DEAD_MAN_URL=''\nALERT_WEBHOOK_URL=''\n");
});
