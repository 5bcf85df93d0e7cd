/**
 * README "The app contract": its claims checked against the worked example, test/fixtures/app, run by the
 * repo's Deno as the servers run it (`deno task start` / `deno task migrate`, PORT, HOST, DATABASE_URL), and
 * every line the section links into the fixture still holding what the link shows — so the README cannot
 * drift from the app it points at.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DENO } from "../lab/local/local-kit.ts";
import { freePort } from "../lab/local/sshd.ts";
import { REPO_ROOT, shippedEnvironment } from "../lab/environments.ts";

const FIXTURE = join(REPO_ROOT, "test", "fixtures", "app");
const README = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
/** The contract section: from its heading to the next `## `. */
const section = README.slice(README.indexOf("## The app contract"), README.indexOf("\n## ", README.indexOf("## The app contract") + 1));
/** What the kit gives the app by default (app.tasks, app.healthPath of a client that sets neither). */
const app = shippedEnvironment("example-prod").app;

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "app-contract-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const denoEnv = (db: string, extra: Record<string, string> = {}) => ({ ...process.env, DATABASE_URL: db, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...extra });
const task = (name: string, db: string, extra: Record<string, string> = {}) =>
  spawnSync(DENO, ["task", name], { cwd: FIXTURE, env: denoEnv(db, extra), encoding: "utf8", timeout: 60_000 });
/** Reads the database as the kit's read-only sqlite3 does. */
const read = (db: string, query: string) => execFileSync("sqlite3", ["-readonly", db, query], { encoding: "utf8" }).trim();

describe("README: The app contract", () => {
  test("is there, with the fixture as its worked example and a marked PostgreSQL paragraph", () => {
    expect(section.startsWith("## The app contract")).toBe(true);
    for (const word of ["`start`", "`migrate`", "`HOST`", "`PORT`", "`DATABASE_URL`", "`app.healthPath`", "SIGTERM", "`PRAGMA user_version`", "`PRAGMA journal_mode = WAL`", "`PRAGMA busy_timeout = 5000`", "`PRAGMA synchronous = NORMAL`", "`PRAGMA mmap_size`", "`PRAGMA wal_checkpoint`", "**On PostgreSQL**"]) {
      expect(section).toContain(word);
    }
  });

  test("every link into the fixture points at a line that holds the code the link shows", () => {
    const links = [...section.matchAll(/\[([^\]]+)\]\(test\/fixtures\/app\/([^)#]+)#L(\d+)\)/g)];
    expect(links.length).toBeGreaterThanOrEqual(12);
    const wrong: string[] = [];
    for (const [, text, file, n] of links) {
      const lines = readFileSync(join(FIXTURE, file), "utf8").split("\n");
      const line = lines[Number(n) - 1];
      if (line === undefined) wrong.push(`${file}#L${n} (${text}): the file has ${lines.length} lines`);
      const code = /^`(.+)`$/.exec(text)?.[1];
      if (code && !line?.includes(code)) {
        const now = lines.findIndex((l) => l.includes(code));
        wrong.push(`${file}#L${n} should show ${code}, but that line is: ${line?.trim()}${now >= 0 ? ` — it is on line ${now + 1} now: change the link to #L${now + 1}` : " — and the file no longer has it"}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe("the fixture app keeps the contract", () => {
  test(`deno.json has the tasks the kit runs by default (${app.tasks.start}, ${app.tasks.migrate})`, () => {
    const tasks = JSON.parse(readFileSync(join(FIXTURE, "deno.json"), "utf8")).tasks as Record<string, string>;
    expect(Object.keys(tasks)).toEqual(expect.arrayContaining([app.tasks.start, app.tasks.migrate]));
  });

  test("its SQLite connection: WAL, busy_timeout 5000, synchronous NORMAL, no mmap, and an SQLite without the WAL-reset bug", () => {
    const db = join(work, "pragmas.sqlite3");
    // The fixture's own openDatabase, as its tasks open the database.
    const probe = `import { openDatabase } from "./db.ts";
const db = openDatabase();
const one = (q) => Object.values(db.prepare(q).get())[0];
console.log(JSON.stringify({ journal: one("PRAGMA journal_mode"), busy: one("PRAGMA busy_timeout"), synchronous: one("PRAGMA synchronous"),
  mmap: one("PRAGMA mmap_size"), autocheckpoint: one("PRAGMA wal_autocheckpoint"), version: one("SELECT sqlite_version()") }));`;
    const ran = spawnSync(DENO, ["eval", "--ext=ts", probe], { cwd: FIXTURE, env: denoEnv(db), encoding: "utf8" });
    expect(ran.stderr).toBe("");
    const got = JSON.parse(ran.stdout);
    console.log(`fixture's connection: ${ran.stdout.trim()}`);
    expect(got).toMatchObject({ journal: "wal", busy: 5000, synchronous: 1, mmap: 0 });
    expect(got.autocheckpoint).toBeGreaterThan(0); // SQLite's passive autocheckpoint left on, as the README says
    const [major, minor, patch] = String(got.version).split(".").map(Number);
    expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(3_051_003);
    expect(read(db, "PRAGMA journal_mode")).toBe("wal"); // stored in the file
  });

  test("its code never sets mmap_size and never runs wal_checkpoint (comments aside)", () => {
    const code = readdirSync(FIXTURE)
      .filter((f) => f.endsWith(".ts"))
      .map((f) => [f, readFileSync(join(FIXTURE, f), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")] as const);
    expect(code.length).toBeGreaterThanOrEqual(3);
    expect(code.filter(([, text]) => /mmap_size|wal_checkpoint/i.test(text)).map(([f]) => f)).toEqual([]);
  });

  test("deno task migrate: records the schema in user_version, runs again without change, refuses a newer database, rolls a failure back", () => {
    const db = join(work, "migrate.sqlite3");
    const first = task(app.tasks.migrate, db);
    expect(first.status).toBe(0);
    const version = Number(read(db, "PRAGMA user_version"));
    expect(version).toBeGreaterThanOrEqual(1);
    const schema = read(db, "PRAGMA schema_version");
    const again = task(app.tasks.migrate, db);
    expect(again.status).toBe(0);
    expect([read(db, "PRAGMA user_version"), read(db, "PRAGMA schema_version")]).toEqual([String(version), schema]); // idempotent
    const failing = task(app.tasks.migrate, db, { FAIL_MIGRATION: "1" });
    expect(failing.status).toBe(1);
    expect(failing.stderr).toContain("failed and was rolled back");
    expect([read(db, "PRAGMA user_version"), read(db, "PRAGMA schema_version")]).toEqual([String(version), schema]); // its transaction rolled back
    execFileSync("sqlite3", [db, `PRAGMA user_version = ${version + 1}`]);
    const newer = task(app.tasks.migrate, db);
    expect(newer.status).toBe(1);
    expect(newer.stderr).toContain("refusing to run");
    console.log(`migrate: user_version ${version}; rerun unchanged; FAIL_MIGRATION exit 1, rolled back; user_version ${version + 1} refused`);
  });

  describe("deno task start", () => {
    let child: ChildProcess;
    let port: number;
    let said = "";
    const url = (path: string) => `http://127.0.0.1:${port}${path}`;
    beforeAll(async () => {
      const db = join(work, "start.sqlite3");
      expect(task(app.tasks.migrate, db).status).toBe(0);
      port = await freePort();
      // As app@.service starts it: PORT, HOST, DATABASE_URL; in its own process group (systemd signals the unit's cgroup).
      child = spawn(DENO, ["task", app.tasks.start], { cwd: FIXTURE, env: denoEnv(db, { PORT: String(port), HOST: "127.0.0.1" }), stdio: ["ignore", "pipe", "pipe"], detached: true });
      child.stdout!.on("data", (d: Buffer) => (said += d));
      child.stderr!.on("data", (d: Buffer) => (said += d));
      for (let i = 0; i < 150 && !(await fetch(url(app.healthPath)).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 100));
    }, 30_000);
    afterAll(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGKILL");
    });

    test(`listens on HOST:PORT and answers ${app.healthPath} with 2xx`, async () => {
      const health = await fetch(url(app.healthPath));
      expect(health.status).toBe(200);
      expect(said).toContain(`listening on http://127.0.0.1:${port}`);
    });

    test("drains on SIGTERM: a request in flight gets its answer, then the app exits and stops listening", async () => {
      const t0 = performance.now();
      const inFlight = fetch(url("/slow?ms=1500")).then(async (r) => ({ status: r.status, body: await r.json(), ms: performance.now() - t0 }));
      await new Promise((r) => setTimeout(r, 300));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      process.kill(-child.pid!, "SIGTERM"); // as systemd stops app@<port>.service: every process of the unit
      const answer = await inFlight;
      const code = await exited;
      const stoppedMs = performance.now() - t0;
      console.log(`SIGTERM 300 ms into a 1.5 s request: answered ${answer.status} after ${answer.ms.toFixed(0)} ms; exited ${code} after ${stoppedMs.toFixed(0)} ms`);
      expect(answer).toMatchObject({ status: 200, body: { sleptMs: 1500 } });
      expect(said).toContain("SIGTERM: draining");
      expect(said).toContain("app: stopped");
      expect([0, 143]).toContain(code); // 143 = 128 + SIGTERM from deno task: app@.service counts it a clean stop (SuccessExitStatus)
      await expect(fetch(url(app.healthPath))).rejects.toThrow();
    }, 30_000);
  });
});
