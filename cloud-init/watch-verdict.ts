/**
 * The watcher's contract: what kit-watch (cloud-init/templates/scripts/watch.sh, every minute) writes on
 * every server, and what scripts/status.ts reads. The one definition both sides import; the server-side
 * script is a template that writes exactly this shape (test/watch.int.test.ts checks it against these types).
 *
 * Files (cloud-init/layout.ts): LAYOUT.watchVerdictFile (the last run), LAYOUT.watchHistoryFile (one line
 * per run, the last 24 h).
 */

/** ok: nothing to do. warn: look at it this week. critical: data is at risk or users see errors: act now. */
export type WatchState = "ok" | "warn" | "critical";

/** What the watcher checks, in the order it checks them (and reports them). */
export const WATCH_CHECKS = [
  /** The newest heartbeat found in the bucket: a row the watcher commits, then looks for in the replica. */
  "replication",
  /** litestream.service active, its metrics answering, its sync error counter not rising. */
  "litestream",
  /** The app's health path through Caddy answers 2xx. */
  "app",
  /** `systemctl --failed` is empty. */
  "units",
  /** The data volume is mounted; its use (warn at 80 %, critical at 90 %). */
  "volume-disk",
  /** The root disk's use (same thresholds). */
  "root-disk",
  /** Inode use on the volume and the root disk (same thresholds). */
  "inodes",
  /** The newest fallback copy: its age, that its last run passed and that the copy is in the bucket. */
  "fallback",
  /** The last restore drill passed and ran when its timer last fired. */
  "drill",
  /** Days left on the certificate Caddy serves (only with a domain; warn < 14, critical < 7). */
  "certificate",
  /** Pending upgrades (warn) and a reboot the installed kernel needs (warn). */
  "updates",
] as const;

export type WatchCheckName = (typeof WATCH_CHECKS)[number];

export interface WatchCheck {
  readonly state: WatchState;
  /** Short human text: "4 s behind", "91 % used", "HTTP 502". */
  readonly value: string;
  /** What to do, when not ok (points at the runbook's "An alert fired"). */
  readonly detail?: string;
}

/** The last drill's report (LAYOUT.drillDir/latest.json), as the watcher read it. */
export interface WatchDrillFact {
  /** The drill's UTC stamp, `YYYYMMDDTHHMMSSZ` as in its report's name. */
  readonly at: string;
  readonly ok: boolean;
  readonly rpoSeconds: number | null;
  readonly rtoSeconds: number | null;
}

/** Measured facts, null when they could not be measured (the check then says why). */
export interface WatchFacts {
  /** The release Caddy's slot runs (`<UTC stamp>-<commit>`). */
  readonly release: string | null;
  /** Installed versions, as the binaries report them (compare with cloud-init/artifacts.ts's pins). */
  readonly deno: string | null;
  readonly litestream: string | null;
  /** Now minus the commit time of the newest heartbeat found in the bucket. */
  readonly replicationLagSeconds: number | null;
  /** Litestream's sync error counter since it started (its metrics). */
  readonly litestreamErrors: number | null;
  /** Age of the newest fallback copy on the volume. */
  readonly fallbackAgeSeconds: number | null;
  readonly drill: WatchDrillFact | null;
  readonly volumeUsedPercent: number | null;
  readonly rootUsedPercent: number | null;
  /** The higher of the volume's and the root disk's inode use. */
  readonly inodesUsedPercent: number | null;
  /** null without a domain. */
  readonly certDaysLeft: number | null;
  readonly updatesPending: number | null;
  readonly rebootRequired: boolean | null;
}

/** LAYOUT.watchVerdictFile: the last run's verdict. */
export interface WatchVerdict {
  readonly schema: 1;
  readonly stack: string;
  readonly client: string;
  readonly environment: string;
  /** ISO 8601 UTC, e.g. `2026-12-03T10:41:00Z`. */
  readonly checkedAt: string;
  readonly durationMs: number;
  /** The worst state of its checks. */
  readonly state: WatchState;
  readonly checks: Readonly<Record<WatchCheckName, WatchCheck>>;
  readonly facts: WatchFacts;
}

/** One line of LAYOUT.watchHistoryFile (compact JSON, one per run, pruned to the last 24 h). */
export interface WatchHistoryLine {
  readonly checkedAt: string;
  readonly state: WatchState;
  readonly replicationLagSeconds: number | null;
  readonly volumeUsedPercent: number | null;
  /** The checks that were not ok. */
  readonly failing: readonly WatchCheckName[];
}

/** How old a verdict may be before the watcher itself counts as stopped (its timer runs every minute). */
export const WATCH_STALE_SECONDS = 180;
