/**
 * The backups' switch that scripts/migrate-to-postgres.ts runs (scripts/lib/pg-backups.ts), run with bash
 * against a logging systemctl on PATH: the order of its calls, and its refusals when database.env disagrees.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LAYOUT } from "../cloud-init/layout.ts";
import { backupsToPostgres, backupsToSqlite } from "../scripts/lib/pg-backups.ts";
import type { Step } from "../scripts/lib/shell.ts";

let bin: string;
beforeAll(() => {
  bin = mkdtempSync(join(tmpdir(), "kit-pg-switch-"));
  writeFileSync(join(bin, "systemctl"), `#!/bin/sh\necho "systemctl $*" >>"${bin}/log"\n`, { mode: 0o755 });
});
afterAll(() => rmSync(bin, { recursive: true, force: true }));

function run(step: Step) {
  rmSync(join(bin, "log"), { force: true });
  const r = spawnSync("bash", ["-s"], { input: step.script.text, encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls: existsSync(join(bin, "log")) ? readFileSync(join(bin, "log"), "utf8").trim().split("\n") : [] };
}

// This machine is no server: it has no database.env, the state of a server on SQLite.
const onSqlite = !existsSync(LAYOUT.databaseEnvFile);

test("to PostgreSQL: refused before database.env is written (the dump would be skipped), nothing stopped", () => {
  expect(onSqlite).toBe(true);
  const r = run(backupsToPostgres());
  expect(r.status).toBe(1);
  expect(r.stderr).toBe("kit: /etc/kit/database.env is missing: write it before switching the backups (the dump would be skipped)\n");
  expect(r.calls).toEqual([]);
});

test("to PostgreSQL, its commands: Litestream and the fallback timer off, the dump's timer on, a first dump started without waiting", () => {
  const text = backupsToPostgres().script.text;
  expect(text.split("\n").filter((l) => l.startsWith("systemctl "))).toEqual([
    "systemctl disable --quiet --now litestream.service fallback-backup.timer",
    "systemctl daemon-reload",
    "systemctl enable --quiet --now kit-pg-dump.timer",
    "systemctl start --no-block kit-pg-dump.service",
  ]);
});

test("back to SQLite (the rollback, database.env moved aside): the dump stopped, Litestream and the fallback timer running again", () => {
  const r = run(backupsToSqlite());
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  expect(r.calls).toEqual(["systemctl stop kit-pg-dump.service", "systemctl enable --quiet --now litestream.service fallback-backup.timer"]);
  expect(r.stdout).toContain("kit: backups on SQLite: litestream.service and fallback-backup.timer running");
});
