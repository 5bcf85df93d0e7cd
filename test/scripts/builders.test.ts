/** The command builders, compared as text, and the pure helpers around them (no server needed). */
import { spawnSync } from "node:child_process";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { parseArgs } from "../../scripts/lib/cli.ts";
import { planFiles } from "../../scripts/lib/deploy-run.ts";
import { OpsError } from "../../scripts/lib/errors.ts";
import { checkTimestamp, summarizeListing } from "../../scripts/lib/restore-run.ts";
import { Secret } from "../../scripts/lib/secret.ts";
import * as deployLock from "../../scripts/lib/deploy-lock.ts";
import * as steps from "../../scripts/lib/server-steps.ts";
import { bash, quote } from "../../scripts/lib/shell.ts";
import { otherPort, parseState } from "../../scripts/lib/state.ts";
import { loadEnvironment, resolveTarget, type Target } from "../../scripts/lib/target.ts";

const env = loadEnvironment("example-prod");
const target: Target = { ...resolveTarget(env, { host: "203.0.113.5", outputs: "/nonexistent.json" }, {}) };
const state = parseState(
  "active_port=8000\napp_port=8000\nbootstrap_done=/srv/app/releases/a\ndb_exists=yes\nslot_8000=/srv/app/releases/a\nslot_8001=\n" +
    "unit_8000=active\nunit_8001=inactive\nrelease=/srv/app/releases/b\nrelease=/srv/app/releases/a\nlock=\nvolume_device=/dev/disk/by-id/scsi-0DO_Volume_x\ns3_endpoint=\ndrill_unit=yes\n",
);

describe("shell text", () => {
  test("values are quoted; secrets show as '***' in the display only", () => {
    expect(quote("plain/path-1.0")).toBe("plain/path-1.0");
    expect(quote("it's a b")).toBe(`'it'\\''s a b'`);
    const s = bash`echo ${"a b"} ${["x", "y z"]} ${new Secret("hunter2")}`;
    expect(s.text).toBe(`echo 'a b' x 'y z' hunter2`);
    expect(s.display).toBe(`echo 'a b' x 'y z' '***'`);
  });

  const everyStep = () => [
    steps.inspect([8000, 8001]), deployLock.lock("me"), deployLock.unlock(), steps.fetchRelease("main"), steps.snapshot("pre-deploy"), steps.schemaVersion(),
    steps.migrate("/r", "migrate"), steps.startSlot(8001, "/r", 30), steps.stopSlot(8000), steps.pruneReleases(5), steps.listBackups(),
    steps.restoreToScratch({ kind: "replica" }), steps.restoreToScratch({ kind: "replica", timestamp: "2026-03-14T14:04:00Z" }), steps.restoreToScratch({ kind: "fallback" }), steps.restoreToScratch({ kind: "file", path: "/mnt/data/aside/x.sqlite3" }), steps.runDrill(),
    steps.pushFiles([{ path: "/etc/litestream.yml", mode: "0644", content: "dbs: []\n", secret: false, early: false, onChange: [], atFirstBoot: [] }]),
    steps.switchUpstream({ path: LAYOUT.upstreamRules, mode: "0644", content: "table ip kit_upstream\n", secret: false, early: false, onChange: [], atFirstBoot: [] }, 8001),
    steps.replaceDatabase("/mnt/data/aside/pre-deploy-x.sqlite3", "failed-deploy", "copy", 8000, [8000, 8001], 60),
    steps.removeScratch("/mnt/data/scratch/x.sqlite3"),
  ];

  test("every step starts with set -euo pipefail", () => {
    for (const s of everyStep()) expect(s.script.text.startsWith("set -euo pipefail\n")).toBe(true);
  });

  test("every step's script passes shellcheck as it is sent (the files it sources live on the server)", () => {
    for (const s of everyStep()) {
      const check = spawnSync("shellcheck", ["--shell=bash", "--exclude=SC1090,SC1091", "-"], { input: s.script.text, encoding: "utf8" });
      expect({ step: s.title, findings: check.stdout }).toEqual({ step: s.title, findings: "" });
      expect(check.status).toBe(0);
    }
  });
});

describe("deploy steps", () => {
  test("the lock is an atomic mkdir of the layout's lock dir, exit 75 when held", () => {
    expect(deployLock.lock("jane@laptop").script.text).toBe(
      `set -euo pipefail\nmkdir -p "$(dirname ${LAYOUT.deployLock})"\nif ! mkdir ${LAYOUT.deployLock} 2>/dev/null; then\n` +
        `  echo "kit: the deploy lock ${LAYOUT.deployLock} is held: $(cat ${LAYOUT.deployLock}/owner 2>/dev/null || echo 'no owner note')" >&2\n  exit 75\nfi\n` +
        `printf '%s\\n' jane@laptop >${LAYOUT.deployLock}/owner`,
    );
    expect(deployLock.unlock().script.text).toBe(`set -euo pipefail\nrm -f ${LAYOUT.deployLock}/owner && rmdir ${LAYOUT.deployLock}`);
  });

  test("a slot starts from its symlink, enabled, and must pass the health check", () => {
    expect(steps.startSlot(8001, "/srv/app/releases/x", 30).script.text).toBe(
      `set -euo pipefail\n. /etc/kit/kit.env\nln -sfn /srv/app/releases/x "$SLOTS_DIR/8001"\nsystemctl enable --quiet app@8001.service\n` +
        `systemctl restart app@8001.service\n/usr/local/lib/kit/wait-healthy.sh 8001 30`,
    );
    // A slot that did not exit cleanly is named, then cleared from `systemctl --failed`.
    expect(steps.stopSlot(8000).script.text).toBe(
      "set -euo pipefail\nsystemctl disable --quiet app@8000.service 2>/dev/null || true\nsystemctl stop app@8000.service\n" +
        "result=$(systemctl show -p Result --value app@8000.service)\nif [[ $result != success ]]; then\n" +
        '  echo "kit: app@8000.service did not stop cleanly (result $result, exit status $(systemctl show -p ExecMainStatus --value app@8000.service)); see: journalctl -u app@8000.service" >&2\n' +
        "  systemctl reset-failed app@8000.service\nfi",
    );
    expect(steps.fetchRelease("v1.2").script.text).toBe("set -euo pipefail\n/usr/local/lib/kit/fetch-release.sh v1.2");
    expect(steps.migrate("/srv/app/releases/x", "migrate").script.text).toBe("set -euo pipefail\n/usr/local/lib/kit/run-task.sh /srv/app/releases/x migrate");
  });

  test("the pre-migration snapshot is a read-only sqlite3 .backup as the app user into the aside dir", () => {
    expect(steps.snapshot("pre-deploy").script.text).toContain(`out="$ASIDE_DIR/pre-deploy-$(date -u +%Y%m%dT%H%M%SZ).sqlite3"\nrunuser -u "$APP_USER" -- sqlite3 -readonly -cmd '.timeout 10000' "$DB_FILE" ".backup '$out'"`);
  });

  test("the schema version the deploy compares around the migration is read-only, as the app user", () => {
    const s = steps.schemaVersion();
    expect(s.readOnly).toBe(true);
    expect(s.script.text).toContain(`runuser -u "$APP_USER" -- sqlite3 -readonly -cmd '.timeout 5000' "$DB_FILE" 'PRAGMA schema_version; PRAGMA user_version;' | paste -sd ' '`);
  });

  test("replacing the database stops both slots and Litestream, moves the live files aside, starts and health-checks", () => {
    const text = steps.replaceDatabase("/mnt/data/aside/pre-deploy-x.sqlite3", "failed-deploy", "copy", 8000, [8000, 8001], 60).script.text;
    expect(text).toContain("systemctl stop app@8000.service app@8001.service litestream.service");
    expect(text).toContain(`for f in "$DB_FILE" "$DB_FILE-wal" "$DB_FILE-shm"; do\n  if [ -e "$f" ]; then mv "$f" "$aside/"`);
    expect(text).toContain(`cp "$src" "$DB_FILE"`);
    expect(text).not.toMatch(/\brm\b/);
    expect(text).toContain("systemctl start litestream.service app@8000.service\n/usr/local/lib/kit/wait-healthy.sh 8000 60");
  });

  test("config push: sizes in the display, never secret contents; reloads only what changed", () => {
    const files = planFiles({ ...target, credentials: { accessKeyId: "AKIA1", secretAccessKey: new Secret("very-secret") } }, state, {
      TF_VAR_secret_SESSION_SECRET: "s3ss",
      TF_VAR_alert_dead_man_url: "https://hc-ping.com/very-secret-uuid",
      TF_VAR_alert_webhook_url: "https://hooks.slack.com/services/T0/B0/verySecretToken",
    }).files;
    const push = steps.pushFiles(files);
    expect(push.script.display).toMatch(/^put \/etc\/kit\/s3.env 0600 <\d+ bytes, secret>$/m);
    expect(push.script.display).not.toContain("very-secret");
    expect(push.script.display).not.toContain("verySecretToken");
    expect(push.script.display).toMatch(/^put \/etc\/kit\/alerts.env 0600 <\d+ bytes, secret>$/m);
    expect(files.find((f) => f.path === LAYOUT.alertsFile)!.content).toBe(
      "ALERT_DEAD_MAN_URL=https://hc-ping.com/very-secret-uuid\nALERT_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/verySecretToken\n",
    );
    expect(push.script.text).toContain(Buffer.from("AWS_SECRET_ACCESS_KEY=very-secret\n").toString("base64").slice(0, 20));
    // A changed file's lines are shown (- old, + new), a secret file's never: put's third argument says which.
    expect(push.script.text).toMatch(/^put \/etc\/kit\/s3\.env 0600 secret /m);
    expect(push.script.text).toMatch(/^put \/etc\/app\/secrets\.env 0600 secret /m);
    expect(push.script.text).toMatch(/^put \/etc\/litestream\.yml 0644 plain /m);
    expect(files.filter((f) => f.secret).map((f) => f.path).sort()).toEqual(["/etc/app/secrets.env", "/etc/kit/alerts.env", "/etc/kit/s3.env"]);
    expect(push.script.text).toContain("if has /etc/kit/s3.env /etc/litestream.yml; then systemctl try-restart litestream.service; fi");
    expect(push.script.text).toContain("systemctl enable --quiet --now fallback-backup.timer restore-drill.timer");
  });
});

describe("what deploy pushes", () => {
  test("without the key pair or secret values here, the server's secret files are left as they are", () => {
    const plan = planFiles(target, state, {});
    // example-prod configures both alerts: without TF_VAR_alert_* a push would blank their URLs.
    expect(plan.left).toEqual([LAYOUT.s3CredentialsFile, LAYOUT.appSecretsFile, LAYOUT.alertsFile]);
    expect(plan.files.map((f) => f.path)).toContain(LAYOUT.kitEnvFile);
    expect(plan.files.find((f) => f.path === LAYOUT.volumeEnvFile)!.content).toContain("VOLUME_DEVICE=/dev/disk/by-id/scsi-0DO_Volume_x");
  });

  test("the deploy switch's rules are rendered for the active slot; the Caddyfile is the same for both", () => {
    const file = (path: string, port?: number) => planFiles(target, state, {}, port).files.find((f) => f.path === path)!.content;
    expect(file(LAYOUT.upstreamRules, 8001)).toContain(`tcp dport ${LAYOUT.ports.upstream} dnat to 127.0.0.1:8001\n`);
    expect(file(LAYOUT.upstreamRules)).toContain(`tcp dport ${LAYOUT.ports.upstream} dnat to 127.0.0.1:8000\n`);
    expect(file(LAYOUT.caddyfile, 8001)).toBe(file(LAYOUT.caddyfile));
  });

  test("some but not all app secrets given is an error naming the missing ones", () => {
    const two = { ...target, env: { ...env, app: { ...env.app, secrets: ["A", "B"] } } };
    expect(() => planFiles(two, state, { TF_VAR_secret_A: "x" })).toThrow("TF_VAR_secret_B");
    expect(planFiles(two, state, { TF_VAR_secret_A: "x", TF_VAR_secret_B: "y" }).left).toEqual([LAYOUT.s3CredentialsFile, LAYOUT.alertsFile]);
  });

  test("alerts.env is pushed only when every configured alert's URL is given here; with none configured, always", () => {
    const deadMan = { TF_VAR_alert_dead_man_url: "https://hc-ping.com/x" };
    expect(planFiles(target, state, deadMan).left).toContain(LAYOUT.alertsFile);
    expect(planFiles(target, state, { ...deadMan, TF_VAR_alert_webhook_url: "https://hooks.slack.com/services/T/B/x" }).left).not.toContain(LAYOUT.alertsFile);
    const onlyDeadMan = { ...target, env: { ...env, alerts: { ...env.alerts, webhook: false } } };
    expect(planFiles(onlyDeadMan, state, deadMan).files.find((f) => f.path === LAYOUT.alertsFile)!.content).toBe("ALERT_DEAD_MAN_URL=https://hc-ping.com/x\nALERT_WEBHOOK_URL=''\n");
    const none = { ...target, env: { ...env, alerts: { ...env.alerts, deadMan: false, webhook: false } } };
    expect(planFiles(none, state, {}).files.find((f) => f.path === LAYOUT.alertsFile)!.content).toBe("ALERT_DEAD_MAN_URL=''\nALERT_WEBHOOK_URL=''\n");
  });
});

describe("helpers", () => {
  test("server state parses; the other slot alternates", () => {
    expect(state).toMatchObject({ activePort: 8000, dbExists: true, slots: { 8000: "/srv/app/releases/a" }, releases: ["/srv/app/releases/a", "/srv/app/releases/b"], drillUnit: true });
    expect(otherPort(8000, 8000)).toBe(8001);
    expect(otherPort(8001, 8000)).toBe(8000);
  });

  test("timestamps must be RFC 3339 with a zone", () => {
    expect(checkTimestamp("2026-03-14T14:04:00Z")).toBe("2026-03-14T14:04:00Z");
    expect(checkTimestamp("2026-03-14T15:04:00+01:00")).toBe("2026-03-14T15:04:00+01:00");
    expect(() => checkTimestamp("2026-03-14 14:04")).toThrow(OpsError);
  });

  test("unknown flags are refused; host facts: flags over outputs over the client file", () => {
    expect(() => parseArgs(["example-prod", "--yse"], {})).toThrow("unknown option --yse");
    const args = parseArgs(["example-prod", "--host", "198.51.100.7", "--port", "2222", "--yes"], {});
    expect(args).toMatchObject({ positional: ["example-prod"], yes: true, target: { host: "198.51.100.7", port: 2222 } });
    const t = resolveTarget(env, args.target, {});
    expect(t.ssh).toEqual({ host: "198.51.100.7", user: "deploy", port: 2222, identity: undefined });
    expect(t).toMatchObject({ bucket: "pixelco-example-prod-backups", replicaPath: "prod/litestream", credentials: undefined });
    expect(() => resolveTarget(env, { outputs: "/nonexistent.json" }, {})).toThrow("no server address for example-prod");
  });

  test("--clients-dir names where the client files are; a missing directory is named, not a stack trace", () => {
    expect(parseArgs(["example-prod", "--clients-dir", "app/clients"], {}).clientsDir).toBe("app/clients");
    expect(parseArgs(["example-prod"], {}).clientsDir).toBeUndefined();
    expect(loadEnvironment("example-prod", "app/clients")).toEqual(env);
    expect(() => loadEnvironment("example-prod", "/nonexistent/clients")).toThrow("--clients-dir /nonexistent/clients: no such directory");
    expect(() => loadEnvironment("acme-prod")).toThrow('no client environment named "acme-prod"');
  });

  test("the listing summary names the restorable time range", () => {
    const text = "== generations\nname  generation  lag  start  end\ns3  abc  1s  2026-03-14T10:00:00Z  2026-03-14T14:10:00Z\n== snapshots\nreplica  generation  index  size  created\ns3  abc  0  100  2026-03-14T10:00:00Z\n== wal\n== fallback\napp-20260314T033000Z.sqlite3.gz 1234\n";
    expect(summarizeListing(text)).toBe("point-in-time restores reach from 2026-03-14T10:00:00Z to 2026-03-14T14:10:00Z (UTC); 1 fallback copies on the volume");
  });
});
