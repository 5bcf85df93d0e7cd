/**
 * restore-on-boot.sh (db-restore.service) against real Litestream 0.3.13 and the lab S3 (HTTPS, each
 * scenario an environment of its own with its least-privilege key): every branch of the
 * policy "a server with an empty volume restores from S3, and never starts empty while S3 is unreachable".
 * The boot tests prove it on a real boot (test/e2e/disaster-recovery.e2e.test.ts); these prove each branch,
 * including an S3 that accepts connections and never answers, in seconds.
 */
import { existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { labAccess, LocalKit, localEnvironment, localEnvironments, type S3Access, unreachableS3 } from "../../lab/local/local-kit.ts";
import { startKitLabS3Process, type LabS3Process } from "../../lab/s3/process.ts";
import { actionsOf, leastPrivilegeProblems } from "./support/iam.ts";

/** The scenarios that reach the lab S3, each its own environment (bucket, prefix, backup user). */
const [brandNew, replaced, damaged] = localEnvironments(["brandnew", "replaced", "damaged"]);
/** Short bounds, so that the refusal comes in seconds: 2 attempts, 1 s apart. */
const FAST = { restoreAttempts: 2, restoreRetrySeconds: 1, restoreAttemptSeconds: 30 };

let lab: LabS3Process;
const kits: LocalKit[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

function newKit(access: S3Access, env: ResolvedEnvironment, extra: Record<string, string | number> = {}): LocalKit {
  const kit = new LocalKit(access, env, { ...FAST, ...extra });
  kits.push(kit);
  return kit;
}
/** A scenario whose S3 is unreachable: an environment of its own that the lab does not serve. */
const offline = (port: number, name: string, extra: Record<string, string | number> = {}) => newKit(unreachableS3(port), localEnvironment(name), extra);

/** A port where nothing listens (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Accepts connections and never answers: a firewall that lets SYNs through to a hung endpoint. */
async function silentServer(): Promise<{ port: number; accepted: () => number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as { port: number }).port, accepted: () => accepted };
}

beforeAll(async () => {
  lab = await startKitLabS3Process([brandNew, replaced, damaged]);
});
afterAll(async () => {
  for (const kit of kits) await kit.cleanup();
  for (const cleanup of cleanups) await cleanup();
  await lab?.stop();
});

test("a database on the volume is kept as it is; S3 is not asked", async () => {
  const kit = offline(await closedPort(), "present");
  kit.sql(kit.dbFile, "CREATE TABLE rows(id INTEGER PRIMARY KEY); INSERT INTO rows DEFAULT VALUES;");
  const ran = await kit.script("restore-on-boot.sh");
  expect(ran.status).toBe(0);
  expect(ran.stdout).toContain(`kit: database present at ${kit.dbFile}; nothing to restore`);
  expect(kit.sql(kit.dbFile, "SELECT count(*) FROM rows")).toBe("1");
});

test("no backup exists yet (a new client): the app may create its database", async () => {
  const kit = newKit(labAccess(lab, brandNew), brandNew);
  const ran = await kit.script("restore-on-boot.sh");
  expect(ran.status).toBe(0);
  expect(ran.stdout).toContain(`kit: no backup exists yet at ${kit.replicaUrl}`);
  expect(existsSync(kit.dbFile)).toBe(false);
});

test("a replacement server with an empty volume restores the replica, checks its integrity, and has every row", async () => {
  const original = newKit(labAccess(lab, replaced), replaced);
  original.sql(original.dbFile, "PRAGMA journal_mode=WAL; CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO rows(body) VALUES ('a'),('b'),('c');");
  await original.startReplication();
  original.sql(original.dbFile, "INSERT INTO rows(body) VALUES ('d');");
  await original.stopReplication(); // SIGTERM: Litestream uploads what is pending

  const replacement = newKit(labAccess(lab, replaced), replaced);
  const ran = await replacement.script("restore-on-boot.sh");
  expect(ran.stderr).toBe("");
  expect(ran.status).toBe(0);
  expect(ran.stdout).toContain(`kit: restored ${replacement.dbFile} from ${replacement.replicaUrl} (integrity ok)`);
  expect(replacement.sql(replacement.dbFile, "SELECT group_concat(body, '') FROM rows")).toBe("abcd");
  // With exactly the environment's least-privilege key: replicate and the restore on boot were each
  // allowed by the statement of the stack's policy meant for the request, inside its prefix, over TLS.
  const decisions = await lab.decisions();
  expect(leastPrivilegeProblems(decisions, replaced)).toEqual([]);
  expect(actionsOf(decisions, replaced)).toEqual(new Set(["s3:ListBucket", "s3:PutObject", "s3:GetObject"]));
});

test("a replica that restores a damaged database: it is moved aside, the volume stays empty, a rerun does not start on it", async () => {
  const original = newKit(labAccess(lab, damaged), damaged);
  original.sql(original.dbFile, "CREATE TABLE rows(id INTEGER PRIMARY KEY, body TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO rows(body) SELECT printf('row %d', i) FROM n;");
  // Garbage over one of the table's pages (page 3 of 4096 bytes): the schema still reads, the data does not.
  const fd = openSync(original.dbFile, "r+");
  writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 2 * 4096);
  closeSync(fd);
  await original.startReplication(); // Litestream snapshots the file as it is
  await original.stopReplication();

  const replacement = newKit(labAccess(lab, damaged), damaged, { bootstrapDoneFile: "/nonexistent/bootstrap-done" });
  const first = await replacement.script("restore-on-boot.sh");
  expect(first.status).toBe(1);
  expect(first.stderr).toContain(`kit: the database restored from ${replacement.replicaUrl} fails PRAGMA integrity_check:`);
  expect(first.stderr).toContain("the volume holds no database and the app stays stopped");
  expect(first.stderr).toContain("litestream restore -config");
  expect(first.stderr).toContain("kit: then start the server on it:  sudo systemctl restart kit-bootstrap.service");
  expect(existsSync(replacement.dbFile)).toBe(false);
  const aside = readdirSync(replacement.path("asideDir"));
  expect(aside).toEqual([expect.stringMatching(/^restore-failed-\d{8}T\d{6}Z\.sqlite3$/)]);

  // The printed rerun restores and checks again: it refuses again, it never takes the damaged copy for data.
  const rerun = await replacement.script("restore-on-boot.sh");
  expect(rerun.status).toBe(1);
  expect(rerun.stderr).toContain("fails PRAGMA integrity_check");
  expect(existsSync(replacement.dbFile)).toBe(false);
});

describe("S3 unreachable with an empty volume", () => {
  test("connection refused: every attempt is reported, the script refuses, creates no database, and prints the rerun of the bootstrap", async () => {
    const kit = offline(await closedPort(), "refused");
    const ran = await kit.script("restore-on-boot.sh");
    expect(ran.status).toBe(1);
    expect(ran.stderr).toContain(`kit: restore attempt 1/2 from ${kit.replicaUrl} failed: `);
    expect(ran.stderr).toMatch(/kit: restore attempt 1\/2 .* failed: .*connection refused/);
    expect(ran.stderr).toMatch(/kit: restore attempt 2\/2 .* failed/);
    expect(ran.stderr).toContain("kit: refusing to start the app on an empty database");
    // First boot (no bootstrap-done file): the fix is to rerun the whole bootstrap.
    expect(ran.stderr).toContain("kit:   sudo systemctl restart kit-bootstrap.service\n");
    expect(existsSync(kit.dbFile)).toBe(false);
  });

  test("after the first boot, the printed fix restarts the restore and the app instead", async () => {
    const kit = offline(await closedPort(), "later");
    writeFileSync(kit.path("bootstrapDoneFile"), "/srv/app/releases/first\n");
    const ran = await kit.script("restore-on-boot.sh");
    expect(ran.status).toBe(1);
    expect(ran.stderr).toContain(
      `kit:   sudo systemctl restart db-restore.service && sudo systemctl start litestream.service app@${kit.path("appPort")}.service\n`,
    );
  });

  test("an S3 that never answers: each attempt ends after RESTORE_ATTEMPT_SECONDS with a plain reason, then the same refusal", async () => {
    const silent = await silentServer();
    const kit = offline(silent.port, "silent", { restoreAttemptSeconds: 2 });
    const started = Date.now();
    const ran = await kit.script("restore-on-boot.sh");
    const elapsedMs = Date.now() - started;
    expect(ran.status).toBe(1);
    expect(silent.accepted()).toBeGreaterThan(0);
    expect(ran.stderr).toContain(`kit: restore attempt 1/2 from ${kit.replicaUrl} failed: no answer within 2s (S3 unreachable or too slow)`);
    expect(ran.stderr).toContain(`kit: restore attempt 2/2 from ${kit.replicaUrl} failed: no answer within 2s`);
    expect(ran.stderr).toContain("kit: refusing to start the app on an empty database");
    // Bounded: 2 attempts of 2 s, 1 s apart (plus process start), not the unit's 30 min timeout.
    expect(elapsedMs).toBeLessThan(60_000);
    expect(existsSync(kit.dbFile)).toBe(false);
  });

  test("the operator's override: with the allow-empty file, the server starts with an empty database, and says so", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kit-allow-empty-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const allow = join(dir, "allow-empty-database");
    writeFileSync(allow, "");
    const kit = offline(await closedPort(), "allowed", { allowEmptyDatabaseFile: allow });
    const ran = await kit.script("restore-on-boot.sh");
    expect(ran.status).toBe(0);
    expect(ran.stderr).toContain(`kit: backups unreachable, but ${allow} exists: starting with an empty database`);
    expect(existsSync(kit.dbFile)).toBe(false);
  });
});
