/**
 * The sample app the boot tests deploy (test/fixtures/app), run on the host with the repo's Deno: its
 * tasks, its endpoints and its shutdown behave as the deploy and restore tests will assume.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { DENO_BIN, FIXTURE_APP_DIR } from "../../lab/harness/paths.ts";
import { run } from "../../lab/harness/process.ts";
import { Teardown } from "../../lab/harness/teardown.ts";
import { waitFor } from "../../lab/harness/wait.ts";

describe("fixture app (test/fixtures/app)", () => {
  let teardown: Teardown;
  let env: NodeJS.ProcessEnv;
  let db: string;
  beforeAll(async () => {
    teardown = await Teardown.begin();
    db = join(teardown.workDir, "app.sqlite3");
    env = { PATH: process.env.PATH, HOME: teardown.workDir, DENO_DIR: join(teardown.workDir, "deno"), DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", DATABASE_URL: db };
  });
  afterAll(() => teardown?.run());

  const task = (name: string, extra: NodeJS.ProcessEnv = {}) =>
    run([DENO_BIN, "task", name], { cwd: FIXTURE_APP_DIR, env: { ...env, ...extra }, allowFailure: true });
  const sql = async (statement: string) => (await run(["sqlite3", db, statement])).stdout.trim();

  test("migrate creates the schema once, in WAL mode, and is idempotent", async () => {
    expect((await task("migrate")).code).toBe(0);
    expect((await task("migrate")).code).toBe(0);
    expect(await sql("PRAGMA user_version;")).toBe("1");
    expect(await sql("PRAGMA journal_mode;")).toBe("wal");
  });

  test("FAIL_MIGRATION=1 exits non-zero and rolls its change back", async () => {
    const failed = await task("migrate", { FAIL_MIGRATION: "1" });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("rolled back");
    expect(await sql("PRAGMA user_version;")).toBe("1");
    expect(await sql("SELECT count(*) FROM sqlite_master WHERE name = 'broken_migration';")).toBe("0");
  });

  describe("server", () => {
    let app: ChildProcess;
    let base: string;
    beforeAll(async () => {
      const port = 20000 + Math.floor(Math.random() * 20000);
      base = `http://127.0.0.1:${port}`;
      app = spawn(DENO_BIN, ["task", "start"], { cwd: FIXTURE_APP_DIR, env: { ...env, PORT: String(port) }, stdio: "ignore" });
      teardown.defer("fixture app", () => void app.kill("SIGKILL"));
      await waitFor(async () => (await fetch(`${base}/healthz`)).ok, { timeoutMs: 30_000, what: "the app's /healthz" });
    });

    test("writes rows and counts them", async () => {
      const first = (await (await fetch(`${base}/rows`, { method: "POST" })).json()) as { id: number };
      const sentinel = await fetch(`${base}/rows`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: "sentinel" }) });
      expect(sentinel.status).toBe(201);
      const duplicate = await fetch(`${base}/rows`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: "sentinel" }) });
      expect(duplicate.status).toBe(409);
      expect(await (await fetch(`${base}/rows/count`)).json()).toEqual({ count: 2 });
      expect(await (await fetch(`${base}/rows/max`)).json()).toEqual({ max: first.id + 1 });
      expect((await fetch(`${base}/rows/value/sentinel`)).status).toBe(200);
      expect((await fetch(`${base}/rows/value/missing`)).status).toBe(404);
      // Committed: another connection sees the rows at once.
      expect(await sql("SELECT count(*) FROM rows;")).toBe("2");
    });

    test("SIGTERM drains a request in flight, then exits 0", async () => {
      const inFlight = fetch(`${base}/slow?ms=1500`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // deno task forwards the signal to the app, as systemd's stop does (it signals the whole unit).
      app.kill("SIGTERM");
      const response = await inFlight;
      expect(response.status).toBe(200);
      const [code] = (await once(app, "exit")) as [number | null];
      expect(code).toBe(0);
    });
  });
});
