/**
 * Backups follow the database (issue 16): on SQLite, Litestream and the fallback copy; on PostgreSQL, the
 * cluster's point-in-time recovery plus the daily pg_dump (kit-pg-dump.service). The units are installed on
 * every server and each backup service runs only where it belongs (ConditionPathExists on LAYOUT.databaseEnvFile),
 * so a push that re-enables the timers never runs the wrong one; these steps make the switch itself visible
 * and immediate. scripts/migrate-to-postgres.ts runs backupsToPostgres() right after it wrote database.env, and
 * backupsToSqlite() on --rollback after it moved database.env aside. Both are idempotent and run as root.
 */
import { LAYOUT } from "../../cloud-init/layout.ts";
import { bash, step, type Step } from "./shell.ts";

const u = LAYOUT.units;

/** Stops and disables Litestream and the SQLite fallback, starts the dump's timer and a first dump (not waited for). */
export function backupsToPostgres(): Step {
  return step(
    `backups to PostgreSQL: stop ${u.litestream} and ${u.fallbackBackupTimer}, start ${u.pgDumpTimer} and a first dump`,
    bash`[ -e ${LAYOUT.databaseEnvFile} ] || { echo "kit: ${LAYOUT.databaseEnvFile} is missing: write it before switching the backups (the dump would be skipped)" >&2; exit 1; }
systemctl disable --quiet --now ${u.litestream} ${u.fallbackBackupTimer}
systemctl daemon-reload
systemctl enable --quiet --now ${u.pgDumpTimer}
# The first dump now, not at tonight's timer: the bucket holds the PostgreSQL data from the start.
systemctl start --no-block ${u.pgDump}
echo "kit: backups on PostgreSQL: ${u.pgDump} started (journalctl -u ${u.pgDump}); ${u.litestream} and ${u.fallbackBackupTimer} stopped and disabled"`,
  );
}

/** The reverse, for a rollback to SQLite: Litestream and the fallback timer enabled and started again. */
export function backupsToSqlite(): Step {
  return step(
    `backups to SQLite: start ${u.litestream} and ${u.fallbackBackupTimer} again`,
    bash`[ ! -e ${LAYOUT.databaseEnvFile} ] || { echo "kit: ${LAYOUT.databaseEnvFile} is still there: move it aside before switching the backups back (the app would stay on PostgreSQL)" >&2; exit 1; }
systemctl stop ${u.pgDump} 2>/dev/null || true
systemctl enable --quiet --now ${u.litestream} ${u.fallbackBackupTimer}
echo "kit: backups on SQLite: ${u.litestream} and ${u.fallbackBackupTimer} running (${u.pgDumpTimer} stays enabled; its service runs only where ${LAYOUT.databaseEnvFile} exists)"`,
  );
}
