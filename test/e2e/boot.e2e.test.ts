/**
 * Boot proof (issue 3, point 4): the example client's real user data, booted once, must leave a server that
 * mounts its volume, installs the pinned binaries, serves the app through Caddy, replicates to S3, makes a
 * verified fallback backup and only lets the deploy key in. One server for the DigitalOcean checks (a boot
 * costs about a minute), one for the Hetzner client. The tests run in order on the same server.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { WATCH_CHECKS, type WatchVerdict } from "../../cloud-init/watch-verdict.ts";
import { createSshKey, log, run, sshArgv } from "../../lab/harness/index.ts";
import { createKitLab, type KitLab, type KitServer, labEnvironment, printTimings } from "../../lab/kit-lab.ts";
import { bootHealthy as bootHealthyIn, expectReplicated as expectReplicatedIn, postRows, restoredIds as restoredIdsIn } from "./boot-checks.ts";

let lab: KitLab;
let server: KitServer;

// The checks every boot proof makes (shared with the Debian 13 suite), on this suite's lab.
const bootHealthy = (name: string, options: Parameters<typeof bootHealthyIn>[2]) => bootHealthyIn(lab, name, options);
const restoredIds = (on: KitServer, label: string) => restoredIdsIn(lab, on, label);
const expectReplicated = (on: KitServer, ids: readonly number[], label: string) => expectReplicatedIn(lab, on, ids, label);

async function root(command: string | readonly string[], on = server): Promise<string> {
  return (await on.machine.exec(command)).stdout.trim();
}

beforeAll(async () => {
  lab = await createKitLab();
  server = await bootHealthy("boot-do", { env: labEnvironment(lab) });
}, 15 * 60_000);
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "boot");
});

describe("a server booted from the example client's user data", () => {
  test("cloud-init finished without errors and the bootstrap succeeded", async () => {
    const status = await server.machine.exec(["cloud-init", "status", "--long"], { allowFailure: true });
    expect(status.stdout).toMatch(/^status: done$/m);
    expect(status.code).toBe(0);
    expect(await root(["systemctl", "show", "-p", "Result", "--value", "kit-bootstrap.service"])).toBe("success");
    expect(await root("systemctl --failed --no-legend --plain")).toBe("");
    const output = await root(["cat", "/var/log/cloud-init-output.log"]);
    expect(output).not.toMatch(/Traceback|\bfailed\b.*\bmodule\b/i);
    expect(await root(["journalctl", "-u", "kit-bootstrap.service", "--no-pager", "-o", "cat"])).toContain("kit-bootstrap: done");
  });

  test("the volume is mounted at /mnt/data and the database file is on it", async () => {
    const env = server.env;
    const [source, target, fstype] = (await root(["findmnt", "-n", "-o", "SOURCE,TARGET,FSTYPE", LAYOUT.volumeMount])).split(/\s+/);
    expect(target).toBe(LAYOUT.volumeMount);
    expect(fstype).toBe("ext4");
    expect(source).toMatch(/loop|scsi-0DO_Volume_/);
    // The database file lives on that filesystem (not on the root disk under the mount point).
    expect(await root(["findmnt", "-n", "-o", "TARGET", "--target", LAYOUT.dbFile])).toBe(LAYOUT.volumeMount);
    expect(await root(["stat", "-c", "%U %s", LAYOUT.dbFile])).toMatch(/^\S+ [1-9]\d*$/);
    expect(await root(["grep", "-F", ` ${LAYOUT.volumeMount} `, "/etc/fstab"])).toContain(`scsi-0DO_Volume_${env.names.volume}`);
  });

  test("Deno and Litestream are the pinned versions", async () => {
    expect(await root([DENO.installPath, "--version"])).toMatch(new RegExp(`^deno ${DENO.version.replace(/\./g, "\\.")} `));
    expect(await root([LITESTREAM.installPath, "version"])).toBe(`v${LITESTREAM.version}`);
  });

  test("the app answers through Caddy on port 80", async () => {
    const res = await server.http("/healthz");
    expect(res.status).toBe(200);
    expect(res.headers.get("server")).toBe("Caddy");
    expect(await res.json()).toMatchObject({ ok: true });
    expect(await root(["systemctl", "is-active", "caddy.service", `app@${server.env.app.port}.service`, "litestream.service"])).toBe(
      "active\nactive\nactive",
    );
  });

  test("rows written through the app can be restored from S3 by an outside litestream restore, and match", async () => {
    const ids = await postRows(server, 25);
    await expectReplicated(server, ids, "do-replica");
    const restored = await restoredIds(server, "do-replica-final");
    const count = ((await (await server.http("/rows/count")).json()) as { count: number }).count;
    expect(restored).toHaveLength(count);
    expect(restored).toEqual(expect.arrayContaining(ids));
  });

  test("the fallback backup job leaves a verified copy on the volume and in the bucket", async () => {
    const before = new Set(await lab.s3.listKeys(`${server.env.names.bucketPrefix}/${LAYOUT.bucket.fallback}/`));
    const rows = ((await (await server.http("/rows/count")).json()) as { count: number }).count;
    await server.machine.exec(["systemctl", "start", "fallback-backup.service"], { timeoutMs: 120_000 });
    expect(await root(["systemctl", "show", "-p", "Result", "--value", "fallback-backup.service"])).toBe("success");

    const name = await root(`ls -1t ${LAYOUT.backupDir}/app-*.sqlite3.gz | head -n1 | xargs -r basename`);
    expect(name).toMatch(/^app-\d{8}T\d{6}Z\.sqlite3\.gz$/);
    const onVolume = `${LAYOUT.backupDir}/${name}`;
    expect(await root(["findmnt", "-n", "-o", "TARGET", "--target", onVolume])).toBe(LAYOUT.volumeMount);
    expect(await root(`gunzip -c ${onVolume} >/run/fallback-check.sqlite3 && sqlite3 /run/fallback-check.sqlite3 'PRAGMA integrity_check;'`)).toBe("ok");
    expect(Number(await root(["sqlite3", "/run/fallback-check.sqlite3", "SELECT count(*) FROM rows;"]))).toBe(rows);

    // Uploaded by s3-put.sh (curl with SigV4) under <env>/fallback/, byte for byte.
    const key = `${server.env.names.bucketPrefix}/${LAYOUT.bucket.fallback}/${name}`;
    const keys = await lab.s3.listKeys(`${server.env.names.bucketPrefix}/${LAYOUT.bucket.fallback}/`);
    expect(keys).toContain(key);
    expect(before.has(key)).toBe(false);
    const uploaded = await lab.s3.getObject(key);
    const local = await server.machine.exec(`sha256sum ${onVolume} | cut -d' ' -f1`);
    expect(createHash("sha256").update(uploaded).digest("hex")).toBe(local.stdout.trim());
    const inflated = join(lab.teardown.workDir, "fallback-from-s3.sqlite3");
    writeFileSync(inflated, gunzipSync(uploaded));
    expect((await run(["sqlite3", inflated, "PRAGMA integrity_check;"])).stdout.trim()).toBe("ok");
  });

  test("every S3 request with the environment's backup key was allowed by the stack's least-privilege statements, over TLS", async () => {
    const mine = (await lab.s3.decisions()).filter((d) => d.principal.endsWith(`:user/${server.env.names.iamUser}`));
    expect(mine.filter((d) => d.result !== "Allowed")).toEqual([]);
    expect([...new Set(mine.map((d) => d.context["aws:SecureTransport"]))]).toEqual(["true"]);
    // The server's own clients were among them: Litestream (aws-sdk-go) and the fallback upload (curl).
    const agent = (d: (typeof mine)[number]) => d.context["aws:UserAgent"] ?? "";
    expect(mine.some((d) => d.action === "s3:PutObject" && agent(d).includes("aws-sdk-go"))).toBe(true);
    expect(mine.some((d) => d.action === "s3:PutObject" && agent(d).startsWith("curl/") && d.resource.includes(`/${LAYOUT.bucket.fallback}/`))).toBe(true);
    const statements = new Set(mine.flatMap((d) => d.decidedBy.map((s) => `${s.policy}/${s.sid}`)));
    expect([...statements].sort()).toEqual(expect.arrayContaining([
      "backups-of-this-environment-only/ListThisEnvironmentOnly",
      "backups-of-this-environment-only/ReadWriteThisEnvironmentOnly",
    ]));
  });

  test("SSH accepts the deploy key, refuses passwords, root, and keys the client file does not list", async () => {
    const whoami = await server.sshDeploy(["id", "-un"]);
    expect(whoami.stdout.trim()).toBe(LAYOUT.users.deploy);

    const sshd = await root(["sshd", "-T"]);
    expect(sshd).toMatch(/^permitrootlogin no$/m);
    expect(sshd).toMatch(/^passwordauthentication no$/m);
    expect(sshd).toMatch(/^kbdinteractiveauthentication no$/m);

    const base = { key: lab.sshKey, host: server.machine.address, knownHostsFile: lab.knownHostsFile };
    // Password only: the server must not even offer it (BatchMode makes a prompt an error, not a hang).
    const passwordArgv = sshArgv({ ...base, user: LAYOUT.users.deploy }, ["true"]);
    const password = await run(
      [passwordArgv[0], "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", ...passwordArgv.slice(1)],
      { allowFailure: true, timeoutMs: 30_000 },
    );
    expect(password.code).not.toBe(0);
    expect(password.stderr).toMatch(/Permission denied \(publickey\)/);

    // Root with the deploy key (cloud-init puts the key in root's authorized_keys too on some images).
    const rootLogin = await run(sshArgv({ ...base, user: "root" }, ["true"]), { allowFailure: true, timeoutMs: 30_000 });
    expect(rootLogin.code).not.toBe(0);
    expect(rootLogin.stderr).toMatch(/Permission denied/);

    // A key only in ~/.ssh/authorized_keys (where cloud-init put the keys at first boot) is ignored: sshd reads
    // the kit's file, which every deploy rewrites from the client file, so a key removed there is revoked.
    const stray = await createSshKey(lab.teardown, "stray_ed25519");
    await root(["sh", "-c", `echo '${stray.publicKey.trim()}' >> /home/${LAYOUT.users.deploy}/.ssh/authorized_keys`]);
    const strayLogin = await run(sshArgv({ ...base, key: stray, user: LAYOUT.users.deploy }, ["true"]), { allowFailure: true, timeoutMs: 30_000 });
    expect(strayLogin.code).not.toBe(0);
    expect(strayLogin.stderr).toMatch(/Permission denied \(publickey\)/);
    expect(await root(["stat", "-c", "%U %a", `${LAYOUT.authorizedKeysDir}/${LAYOUT.users.deploy}`])).toBe("root 644");
  });

  test("the watcher runs by its timer and its verdict says the server is healthy", async () => {
    expect(await root(["systemctl", "is-enabled", LAYOUT.units.watchTimer])).toBe("enabled");
    expect(await root(["systemctl", "is-active", LAYOUT.units.watchTimer])).toBe("active");
    // Its first run is a minute after the bootstrap's last step started the timer.
    const started = Date.now();
    const text = await server.machine.waitFor(
      async () => (await server.machine.exec(["cat", LAYOUT.watchVerdictFile], { allowFailure: true })).stdout.trim() || undefined,
      { timeoutMs: 150_000, intervalMs: 2000, what: `the watcher's first ${LAYOUT.watchVerdictFile}` },
    );
    const verdict = JSON.parse(text) as WatchVerdict;
    const checks = Object.entries(verdict.checks).map(([name, c]) => `${name} ${c.state} (${c.value})`);
    lab.timings.push(`watcher: first verdict ${((Date.now() - started) / 1000).toFixed(0)} s into this test, ${verdict.state} in ${verdict.durationMs} ms: ${checks.join(", ")}`);
    expect(verdict).toMatchObject({ schema: 1, stack: server.env.stackName, client: server.env.client, environment: server.env.environment });
    expect(Object.keys(verdict.checks)).toEqual([...WATCH_CHECKS]);
    // What the kit controls is ok on a fresh server; disks, inodes and updates are the host's and only reported.
    for (const name of ["replication", "litestream", "app", "units", "volume-disk", "fallback", "drill", "certificate"] as const) {
      expect({ name, ...verdict.checks[name] }).toMatchObject({ name, state: "ok" });
    }
    expect(verdict.state).not.toBe("critical");
    expect(verdict.facts.replicationLagSeconds).toBeLessThanOrEqual(verdict.durationMs / 1000 + 1);
    // The heartbeat the replication check measured is a row of the kit's own table, never counted as the app's.
    expect(Number(await root(["sqlite3", LAYOUT.dbFile, "SELECT at FROM _kit_watch WHERE id = 1"]))).toBe(Date.parse(verdict.checkedAt) / 1000);
    expect(await root(["systemctl", "show", "-p", "Result", "--value", LAYOUT.units.watch])).toBe("success");
    expect(await root("systemctl --failed --no-legend --plain")).toBe("");
  }, 200_000);
});

describe("the Hetzner example client", () => {
  test("boots with its volume at /dev/disk/by-id/scsi-0HC_Volume_<id>, serves and replicates", async () => {
    const env = labEnvironment(lab, "examplehz-prod");
    const device = "/dev/disk/by-id/scsi-0HC_Volume_31415926";
    const hz = await bootHealthy("boot-hz", { env, volumeDevice: device });
    expect(await root(["findmnt", "-n", "-o", "TARGET", "--target", LAYOUT.dbFile], hz)).toBe(LAYOUT.volumeMount);
    expect(await root(["grep", "-F", ` ${LAYOUT.volumeMount} `, "/etc/fstab"], hz)).toContain(device);
    const ids = await postRows(hz, 10);
    await expectReplicated(hz, ids, "hz-replica");
    log(`hetzner: ${ids.length} rows replicated to s3://${env.names.bucket}/${env.names.bucketPrefix}/${LAYOUT.bucket.litestream}`);
    await hz.machine.stop();
  }, 15 * 60_000);
});
