/**
 * Several app servers (`servers` > 1): which server the scripts reach (server_ipv4s, --server), and the
 * rollout's order and stops with fake servers (a runner that answers the drain steps, a change that records
 * what it was asked). The rollout against booted servers behind a load balancer: test/e2e/multi-server.e2e.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drainWaitSeconds, LB_HEALTH_CHECK, reactionSeconds, undrainWaitSeconds } from "../../cloud-init/load-balancer.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { serverFiles, templateValues } from "../../cloud-init/server-files.ts";
import { renderTemplate } from "../../cloud-init/template.ts";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { Secret } from "../../scripts/lib/secret.ts";
import { concreteServerValues, shippedEnvironment } from "../../lab/environments.ts";
import { OpsError } from "../../scripts/lib/errors.ts";
import { databaseEnvStep, drain, lbHealthStatus, rollout, type RolloutServer, type ServerChange, undrain } from "../../scripts/lib/rollout.ts";
import type { Step } from "../../scripts/lib/shell.ts";
import type { RunResult } from "../../scripts/lib/ssh.ts";
import { fleetStatus } from "../../scripts/lib/status.ts";
import { resolveTarget, serverLabel, serverNumber, serverTargets, type Target } from "../../scripts/lib/target.ts";

const env = shippedEnvironment("example-staging");
let dir: string;
beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), "kit-multi-"))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function outputs(content: object): string {
  const file = join(dir, `outputs-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ [env.stackName]: content }));
  return file;
}
const three = { ipv4: "203.0.113.1", server_ipv4s: ["203.0.113.1", "203.0.113.2", "203.0.113.3"], load_balancer_ip: "203.0.113.100" };

describe("target: several servers", () => {
  test("server_ipv4s gives every server, the first is ssh.host, the LB's address is kept", () => {
    const target = resolveTarget(env, { outputs: outputs(three) });
    expect(target.servers).toEqual(three.server_ipv4s);
    expect(target.ssh.host).toBe("203.0.113.1");
    expect(target.chosen).toBe(false);
    expect(target.loadBalancer).toBe("203.0.113.100");
    expect(serverTargets(target).map((t) => t.ssh.host)).toEqual(three.server_ipv4s);
  });
  test("without server_ipv4s: ipv4 is the one server", () => {
    expect(resolveTarget(env, { outputs: outputs({ ipv4: "203.0.113.9" }) }).servers).toEqual(["203.0.113.9"]);
  });
  test("--server N and --server ADDR choose one", () => {
    const file = outputs(three);
    expect(resolveTarget(env, { outputs: file, server: "2" })).toMatchObject({ ssh: { host: "203.0.113.2" }, chosen: true });
    expect(resolveTarget(env, { outputs: file, server: "203.0.113.3" })).toMatchObject({ ssh: { host: "203.0.113.3" }, chosen: true });
  });
  test("--server out of range, unknown, or with --host: refused naming the servers", () => {
    const file = outputs(three);
    expect(() => resolveTarget(env, { outputs: file, server: "4" })).toThrow("--server 4: example-staging has 3 servers (1 = 203.0.113.1, 2 = 203.0.113.2, 3 = 203.0.113.3)");
    expect(() => resolveTarget(env, { outputs: file, server: "0" })).toThrow(OpsError);
    expect(() => resolveTarget(env, { outputs: file, server: "198.51.100.7" })).toThrow("--server 198.51.100.7 is not one of example-staging's servers");
    expect(() => resolveTarget(env, { outputs: file, server: "1", host: "198.51.100.7" })).toThrow("--host and --server both name the server");
  });
  test("a server_ipv4s that is not a list of addresses, or does not start with ipv4, is refused", () => {
    expect(() => resolveTarget(env, { outputs: outputs({ server_ipv4s: "203.0.113.1" }) })).toThrow("server_ipv4s must be a list of addresses");
    expect(() => resolveTarget(env, { outputs: outputs({ ipv4: "203.0.113.2", server_ipv4s: ["203.0.113.1", "203.0.113.2"] }) })).toThrow("ipv4 203.0.113.2 is not the first of server_ipv4s");
  });
});

describe("status: a row per server", () => {
  test("each server of server_ipv4s is read and shown as <stack> #k; one server keeps the plain name", async () => {
    const target = resolveTarget(env, { outputs: outputs(three) });
    expect(serverTargets(target).map(serverLabel)).toEqual(["example-staging #1", "example-staging #2", "example-staging #3"]);
    expect(serverLabel(resolveTarget(env, { outputs: outputs({ ipv4: "203.0.113.9" }) }))).toBe("example-staging");
    const asked: string[] = [];
    const report = await fleetStatus(serverTargets(target).map((t) => ({ target: t })), {
      runnerFor: (t) => ({ destination: `deploy@${t.ssh.host}`, run: async () => (asked.push(t.ssh.host), Promise.reject(new Error("ssh to it timed out"))) }),
    });
    expect(asked.sort()).toEqual(three.server_ipv4s);
    expect(report.environments.map((r) => [r.stack, r.destination, r.state])).toEqual(three.server_ipv4s.map((a, i) => [`example-staging #${i + 1}`, `deploy@${a}`, "critical"]));
  });
});

describe("the drain", () => {
  test("the waits follow the LB's health check: out after 2 failed checks 3 s apart (+ timeout and a second)", () => {
    expect(drainWaitSeconds()).toBe(LB_HEALTH_CHECK.unhealthyThreshold * LB_HEALTH_CHECK.intervalSeconds + LB_HEALTH_CHECK.timeoutSeconds + 1);
    expect(drainWaitSeconds()).toBe(10);
    expect(undrainWaitSeconds()).toBe(10);
    expect(reactionSeconds({ intervalSeconds: 10, timeoutSeconds: 5 }, 3)).toBe(36);
  });
  test("the Caddyfile answers 503 on the health path only while the drain file exists", () => {
    const caddyfile = serverFiles(env, concreteServerValues(env)).find((f) => f.path === LAYOUT.caddyfile)!.content;
    expect(caddyfile).toContain(`@drained {\n\t\tpath ${env.app.healthPath}\n\t\tfile {\n\t\t\troot /\n\t\t\ttry_files ${LAYOUT.lbDrainFile}\n\t\t}\n\t}\n\trespond @drained "draining" 503\n`);
  });
  test("behind the LB (servers > 1) Caddy serves plain HTTP on :80 for any Host, even with a domain (the LB holds the certificate)", () => {
    const prod = shippedEnvironment("example-prod");
    const caddyfile = (e: typeof prod) => serverFiles(e, concreteServerValues(e)).find((f) => f.path === LAYOUT.caddyfile)!.content;
    expect(caddyfile(prod)).toMatch(new RegExp(`^${prod.domain!.name.replace(/\./g, "\\.")} \\{$`, "m"));
    expect(caddyfile({ ...prod, servers: 2 })).toMatch(/^:80 \{$/m);
  });
  test("drain creates the file and checks Caddy now answers 503; undrain removes it and waits for 200", () => {
    expect(drain("/healthz").script.text).toContain(`touch ${LAYOUT.lbDrainFile}`);
    expect(drain("/healthz").script.text).toContain(`if [ "$code" != 503 ]; then rm -f ${LAYOUT.lbDrainFile}`);
    expect(undrain("/healthz").script.text).toContain(`rm -f ${LAYOUT.lbDrainFile}`);
    expect(undrain("/healthz").script.text).toContain(`if [ "$code" = 200 ]; then exit 0; fi`);
    expect(lbHealthStatus("/healthz").readOnly).toBe(true);
  });
});

/** Fake servers: what every runner ran and what the change was asked, in one list. */
function fakeServers(count: number, options: { status?: Record<number, string>; drained?: number[] } = {}) {
  const events: string[] = [];
  const target = resolveTarget(env, { outputs: outputs({ server_ipv4s: Array.from({ length: count }, (_, i) => `203.0.113.${i + 1}`) }) });
  const servers: RolloutServer[] = serverTargets(target).map((t: Target, i) => ({
    number: i + 1,
    target: t,
    runner: {
      destination: t.ssh.host,
      run: async (step: Step): Promise<RunResult> => {
        const n = i + 1;
        if (step.title === lbHealthStatus(env.app.healthPath).title) {
          return { exitCode: 0, stdout: `drained=${options.drained?.includes(n) ? "yes" : "no"}\nstatus=${options.status?.[n] ?? "200"}\n`, stderr: "" };
        }
        events.push(`${n}: ${step.title.split(":")[0]}`);
        return { exitCode: 0, stdout: "", stderr: "" };
      },
    },
  }));
  return { events, servers };
}

function change(events: string[], fail: Record<number, string> = {}): ServerChange {
  return {
    what: "deploy of v2",
    current: async (s) => `/srv/app/releases/v1-on-${s.number}`,
    apply: async (s, first) => {
      events.push(`${s.number}: deploy${first ? " with migration" : ""}`);
      if (fail[s.number]) throw new OpsError(fail[s.number], "rolled back");
      return `/srv/app/releases/v2-on-${s.number}`;
    },
    plan: async (s, first) => void events.push(`${s.number}: plan${first ? " with migration" : ""}`),
  };
}

describe("rollout", () => {
  const sleeps = (events: string[]) => async (ms: number) => void events.push(`sleep ${ms / 1000}`);

  test("one server at a time: drain, wait, deploy (migration on the first only), undrain, wait", async () => {
    const { events, servers } = fakeServers(3);
    const outcomes = await rollout({ env, servers, change: change(events), sleep: sleeps(events) });
    const perServer = (n: number, migration: boolean) => [`${n}: drain`, "sleep 10", `${n}: deploy${migration ? " with migration" : ""}`, `${n}: undrain`, "sleep 10"];
    expect(events).toEqual([...perServer(1, true), ...perServer(2, false), ...perServer(3, false)]);
    expect(outcomes.map((o) => [o.state, o.after])).toEqual([1, 2, 3].map((n) => ["changed", `/srv/app/releases/v2-on-${n}`]));
  });

  test("a failure on server 2 stops there: 2 back in rotation on its release, 3 untouched, the message says who runs what", async () => {
    const { events, servers } = fakeServers(3);
    const error = await rollout({ env, servers, change: change(events, { 2: "health check failed" }), sleep: sleeps(events) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpsError);
    expect(events.filter((e) => e.startsWith("3:"))).toEqual([]);
    expect(events.slice(-3)).toEqual(["2: deploy", "2: undrain", "sleep 10"]);
    const message = (error as OpsError).message;
    expect(message).toContain("deploy of v2 failed on server 2: health check failed");
    expect(message).toContain("server 1 (203.0.113.1): /srv/app/releases/v2-on-1");
    expect(message).toContain("server 2 (203.0.113.2): /srv/app/releases/v1-on-2  (rolled back: the change failed here)");
    expect(message).toContain("server 3 (203.0.113.3): /srv/app/releases/v1-on-3  (untouched)");
    expect((error as OpsError).fix).toContain("servers 3 were not touched");
  });

  test("a server already out of rotation (not 200, not drained) is refused before anything is drained", async () => {
    const { events, servers } = fakeServers(2, { status: { 2: "502" } });
    await expect(rollout({ env, servers, change: change(events), sleep: sleeps(events) })).rejects.toThrow(`server 2 (203.0.113.2) answers 502 on ${env.app.healthPath}`);
    expect(events).toEqual([]);
  });

  test("a server left drained by an interrupted rollout is not refused: it is put back in its turn", async () => {
    const { events, servers } = fakeServers(2, { status: { 2: "503" }, drained: [2] });
    await rollout({ env, servers, change: change(events), sleep: sleeps(events) });
    expect(events).toContain("2: undrain");
  });

  test("--dry-run drains nothing and shows each server's own plan, the migration on the first", async () => {
    const { events, servers } = fakeServers(2);
    const outcomes = await rollout({ env, servers, change: change(events), sleep: sleeps(events), dryRun: true });
    expect(events).toEqual(["1: plan with migration", "2: plan"]);
    expect(outcomes.every((o) => o.state === "untouched")).toBe(true);
  });
});

describe("servers 2..N: PostgreSQL only, from the first boot", () => {
  /** restore-on-boot.sh as rendered for server `index`, run by bash with kit.env pointing into a temp dir. */
  function restoreOnBoot(index: number, options: { databaseEnvAfterMs?: number; dbFile?: boolean } = {}) {
    const at = mkdtempSync(join(dir, "boot-"));
    const paths = { databaseEnvFile: join(at, "database.env"), dbFile: join(at, "app.sqlite3") };
    if (options.dbFile) writeFileSync(paths.dbFile, "");
    const values = templateValues(env, concreteServerValues(env, { serverIndex: index }));
    writeFileSync(join(at, "kit.env"), renderTemplate("config/kit.env", { ...values, ...paths }).replace(/^DATABASE_ENV_FILE=.*$/m, `DATABASE_ENV_FILE=${paths.databaseEnvFile}`) + "SERVER_WAIT_SECONDS=3\n");
    const script = renderTemplate("scripts/restore-on-boot.sh", { ...values, kitEnvFile: join(at, "kit.env") });
    const arrive = options.databaseEnvAfterMs === undefined ? "" : `(sleep ${options.databaseEnvAfterMs / 1000}; touch ${paths.databaseEnvFile}) & `;
    const ran = spawnSync("bash", ["-c", `${arrive}bash -c "$0"`, script], { encoding: "utf8", timeout: 20_000 });
    return { ...ran, restoredSomething: existsSync(paths.dbFile) && !options.dbFile };
  }

  test("kit.env says which server this is (the stack passes serverIndex; default 1)", () => {
    expect(serverFiles(env, concreteServerValues(env, { serverIndex: 2 })).find((f) => f.path === LAYOUT.kitEnvFile)!.content).toContain("\nSERVER_INDEX=2\n");
    expect(serverFiles(env, concreteServerValues(env)).find((f) => f.path === LAYOUT.kitEnvFile)!.content).toContain("\nSERVER_INDEX=1\n");
  });
  test("server 2 without database.env restores nothing and refuses after the wait: the app stays stopped", () => {
    const r = restoreOnBoot(2);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("server 2 of example-staging runs on PostgreSQL only: waiting for");
    expect(r.stderr).toContain("did not come: the app stays stopped. Run npx zx scripts/deploy.ts example-staging --config-only");
    expect(r.restoredSomething).toBe(false);
  });
  test("server 2 whose database.env arrives during the wait goes on, on PostgreSQL", () => {
    const r = restoreOnBoot(2, { databaseEnvAfterMs: 1000 });
    expect(r.stdout).toContain("is here: the app starts on PostgreSQL");
    expect(r.status).toBe(0);
  });
  test("server 1 goes on to the SQLite path as before (here: database present)", () => {
    const r = restoreOnBoot(1, { dbFile: true });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("database present at");
  });
  test("database.env: the URLs travel as secrets, server 1 on SQLite is left alone, a waiting first boot is waited for", () => {
    const put = databaseEnvStep({ url: new Secret("postgresql://app:s3cret@db.internal:25060/app?sslmode=verify-full"), drillUrl: new Secret("postgresql://app:s3cret@db.internal:25060/app_drill?sslmode=verify-full"), caCertificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" });
    expect(put.script.display).not.toContain("s3cret");
    expect(put.script.text).toContain("DATABASE_URL=");
    expect(put.script.text).toContain("s3cret");
    expect(put.script.display).toContain(`if [ ! -e "$DATABASE_ENV_FILE" ] && [ "\${SERVER_INDEX:-1}" -le 1 ]; then`);
    expect(put.script.display).toContain(`install -m 0600 -o root -g root "$env_new" "$DATABASE_ENV_FILE"`);
    expect(put.script.display).toContain('[ -e "$BOOTSTRAP_DONE_FILE" ] && exit 0');
  });
  test("the outputs' database_url and CA become the target's database; planFiles renders each server's own index", () => {
    const target = resolveTarget(env, { outputs: outputs({ ...three, database_url: "postgresql://app:pw@h:1/app?sslmode=verify-full", database_ca_certificate: "PEM" }) });
    expect(target.database?.url).toBeInstanceOf(Secret);
    expect(target.database?.caCertificate).toBe("PEM");
    expect(resolveTarget(env, { outputs: outputs(three) }).database).toBeUndefined();
    // deploy.ts renders kit.env's SERVER_INDEX from this: each server's place in server_ipv4s.
    expect(serverTargets(target).map(serverNumber)).toEqual([1, 2, 3]);
    expect(serverNumber(resolveTarget(env, { outputs: outputs(three), host: "198.51.100.7" }))).toBe(1);
  });
});
