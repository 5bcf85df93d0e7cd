#!/usr/bin/env -S deno run --quiet --no-prompt --no-config --allow-read --allow-write
// Runs the SQL on stdin against one database with Deno's bundled SQLite (Deno 2.9.6: 3.53.2), never
// Debian's sqlite3 (3.40.1): SQLite 3.7.0-3.51.2 can corrupt a WAL database when another process (the app,
// Litestream) writes or checkpoints it at the same moment (sqlite.org/wal.html#walresetbug). Every kit
// write to the live database goes through here. Usage: kit-sql.js <database> < statements.sql
// It prints nothing (writes only; reads stay with sqlite3 -readonly); `kit-sql.js --version` prints the SQLite.
import { DatabaseSync } from "node:sqlite";

const FIXED = [3, 51, 3];
const fail = (message) => {
  console.error(`kit-sql: ${message}`);
  Deno.exit(1);
};
const [file] = Deno.args;
if (!file) fail("usage: kit-sql.js <database> < statements.sql (or kit-sql.js --version)");
const db = new DatabaseSync(file === "--version" ? ":memory:" : file, { open: false, timeout: 5000 });
const version = () => db.prepare("SELECT sqlite_version() AS v").get().v;
if (file !== "--version") {
  // Never create the database: a missing file means the first boot has not restored it yet.
  try {
    Deno.statSync(file);
  } catch {
    fail(`no database at ${file}; nothing was written`);
  }
}
db.open();
const older = version().split(".").map(Number).reduce((d, n, i) => d || n - FIXED[i], 0) < 0;
if (older) fail(`SQLite ${version()} has the WAL-reset bug (fixed in 3.51.3): upgrade Deno; nothing was written`);
if (file === "--version") {
  console.log(version());
  Deno.exit(0);
}
const sql = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer());
try {
  // Checkpoints are Litestream's: a kit write must not start one.
  db.exec("PRAGMA wal_autocheckpoint=0");
  db.exec(sql);
} catch (e) {
  fail(`${file}: ${e.message}`);
} finally {
  db.close();
}
