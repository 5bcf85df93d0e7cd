/**
 * The fleet view (scripts/status.ts): each server's watcher verdict (cloud-init/watch-verdict.ts), the last
 * day of its history and its installed versions, read over SSH in one read-only step per server, a bounded
 * number at a time, and turned into one row per environment. A server that cannot be read is a red row
 * naming why, never a crash; a verdict older than WATCH_STALE_SECONDS (by the server's own clock) means the
 * watcher itself stopped, and is red too.
 */
import { LAYOUT } from "../../cloud-init/layout.ts";
import { DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { WATCH_STALE_SECONDS, type WatchCheckName, type WatchHistoryLine, type WatchState, type WatchVerdict } from "../../cloud-init/watch-verdict.ts";
import { OpsError } from "./errors.ts";
import { outputKeysOf, type OutputKey } from "./rotate-keys-run.ts";
import { bash, step, type Step } from "./shell.ts";
import type { Runner } from "./state.ts";
import { serverLabel, type Target } from "./target.ts";

/** A cell's judgment; "none" is no judgment (nothing to compare with, or not applicable). */
export type CellState = WatchState | "none";

export interface Cell {
  readonly state: CellState;
  /** What the table shows: short. */
  readonly text: string;
  /** The whole story when not ok: what was seen and where to look. */
  readonly detail?: string;
}

/** The columns, in the table's order, with their headings. */
export const STATUS_COLUMNS = [
  ["health", "health"],
  ["release", "release"],
  ["lag", "replication lag"],
  ["fallback", "last fallback"],
  ["drill", "last drill (RPO/RTO)"],
  ["disk", "disk % (volume/root/inodes)"],
  ["deno", "Deno"],
  ["litestream", "Litestream"],
  ["updates", "updates"],
  ["certificate", "certificate"],
  ["backupKey", "backup key"],
] as const;

export type ColumnName = (typeof STATUS_COLUMNS)[number][0];

/** One point of the lag chart (history.jsonl). */
export interface LagPoint {
  readonly checkedAt: string;
  readonly replicationLagSeconds: number | null;
  readonly state: WatchState;
}

/** One environment's row: the `--json` output holds a list of these (README, "Status of the fleet"). */
export interface StatusRow {
  readonly stack: string;
  readonly client: string;
  readonly environment: string;
  /** user@host[:port], or "" when no address is known. */
  readonly destination: string;
  /** The worst state of its cells. */
  readonly state: WatchState;
  /** Why there is no (current) verdict: the SSH error, the missing file, the silent watcher. */
  readonly error: string | null;
  /** The verdict's checkedAt and its age by the server's clock (null without a verdict). */
  readonly checkedAt: string | null;
  readonly verdictAgeSeconds: number | null;
  readonly cells: Readonly<Record<ColumnName, Cell>>;
  /** The last 24 h of the watcher's runs, oldest first (the chart of --html). */
  readonly lagHistory: readonly LagPoint[];
  /** The verdict as the server wrote it (null when there is none). */
  readonly verdict: WatchVerdict | null;
}

export interface StatusReport {
  readonly schema: 1;
  readonly generatedAt: string;
  /** Something is red: status.ts exits 1. */
  readonly red: boolean;
  readonly environments: readonly StatusRow[];
}

/** Where the step reads on a server (tests point these at a local kit's files). */
export interface StatusPaths {
  readonly watchVerdictFile: string;
  readonly watchHistoryFile: string;
  readonly s3CredentialsFile: string;
  readonly deno: string;
  readonly litestream: string;
}

export const STATUS_PATHS: StatusPaths = {
  watchVerdictFile: LAYOUT.watchVerdictFile,
  watchHistoryFile: LAYOUT.watchHistoryFile,
  s3CredentialsFile: LAYOUT.s3CredentialsFile,
  deno: DENO.installPath,
  litestream: LITESTREAM.installPath,
};

const HISTORY_MARK = "--history--";

/** Reads the verdict, the history, the versions and the backup key's id (never its secret). Read-only. */
export function readStatusStep(paths: StatusPaths = STATUS_PATHS): Step {
  return step(
    "read the watcher's verdict",
    bash`echo "now=$(date -u +%s)"
if [ -e ${paths.watchVerdictFile} ]; then echo "verdict=$(tr -d '\\n' <${paths.watchVerdictFile})"; else echo "verdict="; fi
echo "deno=$(${paths.deno} -V 2>/dev/null | head -n 1 || true)"
echo "litestream=$(${paths.litestream} version 2>/dev/null | head -n 1 || true)"
echo "key=$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' ${paths.s3CredentialsFile} 2>/dev/null | tr -d "\\"'" || true)"
echo ${HISTORY_MARK}
cat ${paths.watchHistoryFile} 2>/dev/null || true`,
    true,
  );
}

/** What one server said (or why it said nothing). */
export interface Reading {
  /** The server's clock, Unix seconds. */
  readonly now: number;
  /** The verdict's text ("" when the file does not exist). */
  readonly verdictText: string;
  readonly historyLines: readonly string[];
  /** As the binaries print them ("deno 2.9.6", "v0.3.13"); "" when they did not run. */
  readonly deno: string;
  readonly litestream: string;
  /** The access key id in s3.env. */
  readonly keyId: string;
}

export function parseReading(stdout: string): Reading {
  const at = stdout.indexOf(`\n${HISTORY_MARK}\n`);
  const head = at < 0 ? stdout : stdout.slice(0, at);
  const values = new Map<string, string>();
  for (const line of head.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) values.set(line.slice(0, i), line.slice(i + 1));
  }
  const tail = at < 0 ? "" : stdout.slice(at + HISTORY_MARK.length + 2);
  return {
    now: Number(values.get("now")),
    verdictText: values.get("verdict") ?? "",
    historyLines: tail.split("\n").filter((l) => l.trim() !== ""),
    deno: values.get("deno") ?? "",
    litestream: values.get("litestream") ?? "",
    keyId: values.get("key") ?? "",
  };
}

/** Runs `fn` over `items`, at most `limit` at a time; results in the items' order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** A stack to show: its target, or why there is none (no address: a red row too). */
export type StatusTarget = { readonly target: Target; readonly problem?: undefined } | { readonly stack: string; readonly client: string; readonly environment: string; readonly problem: OpsError };

export interface StatusOptions {
  /** Where to read on each server. @default STATUS_PATHS (the layout's) */
  readonly pathsFor?: (target: Target) => StatusPaths;
  /** How many servers are read at once. @default 4 */
  readonly parallel?: number;
  /** How long one server may take. @default 30 s */
  readonly timeoutMs?: number;
  /** The runner for a target (the SSH runner; closed by the caller). */
  readonly runnerFor: (target: Target) => Runner;
  /** The operator's clock, for the backup key's age. */
  readonly now?: () => number;
}

/** Reads every target and builds its row. Never throws for a server's failure: that is the row. */
export async function fleetStatus(targets: readonly StatusTarget[], options: StatusOptions): Promise<StatusReport> {
  const now = options.now ?? Date.now;
  const rows = await mapBounded(targets, options.parallel ?? 4, async (t): Promise<StatusRow> => {
    if (t.problem) return failedRow({ stack: t.stack, client: t.client, environment: t.environment }, "", t.problem);
    const { env } = t.target;
    const names = { stack: serverLabel(t.target), client: env.client, environment: env.environment };
    const runner = options.runnerFor(t.target);
    try {
      const result = await runner.run(readStatusStep(options.pathsFor?.(t.target)), { timeoutMs: options.timeoutMs ?? 30_000, onProgress: () => undefined });
      return buildRow(names, runner.destination, parseReading(result.stdout), backupKeys(t.target), now());
    } catch (error) {
      return failedRow(names, runner.destination, error);
    }
  });
  return { schema: 1, generatedAt: new Date(now()).toISOString(), red: rows.some((r) => r.state === "critical"), environments: rows };
}

/** The outputs file's keys (rotate-keys' source), or why they are not known here. */
export function backupKeys(target: Target): { keys: readonly OutputKey[] } | { unknown: string } {
  try {
    return { keys: outputKeysOf(target.outputsFile, target.env.stackName) };
  } catch (error) {
    return { unknown: error instanceof OpsError ? error.message : String(error) };
  }
}

interface Names {
  readonly stack: string;
  readonly client: string;
  readonly environment: string;
}

const NO_CELL: Cell = { state: "none", text: "—" };

/** The row of a server that said nothing: its health cell says why, in red. */
export function failedRow(names: Names, destination: string, error: unknown): StatusRow {
  const message = error instanceof OpsError ? `${error.message} (fix: ${error.fix.split("\n")[0]})` : error instanceof Error ? error.message : String(error);
  const text = error instanceof Error ? error.message : "";
  const short = /^no server address/.test(text) ? "no address" : /cannot reach|refused the login|host key|ssh to|timed out/.test(text) ? "unreachable" : "not read";
  const cells = Object.fromEntries(STATUS_COLUMNS.map(([name]) => [name, NO_CELL])) as Record<ColumnName, Cell>;
  cells.health = { state: "critical", text: short, detail: message };
  return { ...names, destination, state: "critical", error: message, checkedAt: null, verdictAgeSeconds: null, cells, lagHistory: [], verdict: null };
}

const ORDER: readonly CellState[] = ["none", "ok", "warn", "critical"];
export const worst = (states: readonly CellState[]): CellState => states.reduce((a, b) => (ORDER.indexOf(b) > ORDER.indexOf(a) ? b : a), "none");

const rowState = (cells: Record<ColumnName, Cell>): WatchState => {
  const w = worst(Object.values(cells).map((c) => c.state));
  return w === "none" ? "ok" : w;
};

/** 45 s, 12 min, 3 h, 2 d. */
export function age(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 3 * 86_400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

/** Keys older than this are worth rotating (the common 90-day rule); never red: an old key still works. */
export const KEY_AGE_WARN_DAYS = 90;

/** The row of a server that answered. */
export function buildRow(names: Names, destination: string, reading: Reading, keys: ReturnType<typeof backupKeys>, operatorNow: number): StatusRow {
  const cells = Object.fromEntries(STATUS_COLUMNS.map(([name]) => [name, NO_CELL])) as Record<ColumnName, Cell>;
  const serverNow = Number.isFinite(reading.now) && reading.now > 0 ? reading.now : operatorNow / 1000;
  cells.deno = versionCell(reading.deno.replace(/^deno /, ""), DENO.version);
  cells.litestream = versionCell(reading.litestream.replace(/^v/, ""), LITESTREAM.version);
  cells.backupKey = keyCell(keys, reading.keyId, operatorNow);
  const row = (verdict: WatchVerdict | null, error: string | null, history: LagPoint[], ageSeconds: number | null): StatusRow => ({
    ...names,
    destination,
    state: rowState(cells),
    error,
    checkedAt: verdict?.checkedAt ?? null,
    verdictAgeSeconds: ageSeconds,
    cells,
    lagHistory: history,
    verdict,
  });

  if (reading.verdictText === "") {
    const error = `no verdict: ${STATUS_PATHS.watchVerdictFile} does not exist (the watcher is not installed, or never ran)`;
    cells.health = { state: "critical", text: "no verdict", detail: `${error}; see: systemctl status ${LAYOUT.units.watchTimer}` };
    return row(null, error, [], null);
  }
  let verdict: WatchVerdict;
  try {
    verdict = JSON.parse(reading.verdictText) as WatchVerdict;
    if (verdict.schema !== 1 || typeof verdict.checks !== "object" || typeof verdict.facts !== "object") throw new Error(`schema ${JSON.stringify(verdict.schema)}, not the kit's schema 1`);
  } catch (error) {
    const message = `the verdict cannot be read: ${(error as Error).message}`;
    cells.health = { state: "critical", text: "bad verdict", detail: `${message}; see: journalctl -u ${LAYOUT.units.watch} -n 20` };
    return row(null, message, [], null);
  }
  const checked = Date.parse(verdict.checkedAt) / 1000;
  const ageSeconds = Number.isFinite(checked) ? Math.max(0, Math.round(serverNow - checked)) : null;
  const since = serverNow - 86_400;
  const history = reading.historyLines
    .map((line) => {
      try {
        return JSON.parse(line) as WatchHistoryLine;
      } catch {
        return null; // a line cut short by a full disk: skipped, the rest still charts
      }
    })
    .filter((h): h is WatchHistoryLine => h !== null && Date.parse(h.checkedAt) / 1000 >= since)
    .map((h) => ({ checkedAt: h.checkedAt, replicationLagSeconds: h.replicationLagSeconds, state: h.state }));

  const check = (name: WatchCheckName) => verdict.checks[name] ?? { state: "critical" as const, value: "not in the verdict" };
  const fromCheck = (name: WatchCheckName, text?: string): Cell => {
    const c = check(name);
    return { state: c.state, text: text ?? c.value, ...(c.state === "ok" ? {} : { detail: `${c.value}${c.detail ? ` — ${c.detail}` : ""}` }) };
  };
  const f = verdict.facts;
  const failing = Object.entries(verdict.checks).filter(([, c]) => c.state !== "ok").map(([name]) => name);
  let error: string | null = null;
  if (ageSeconds === null || ageSeconds > WATCH_STALE_SECONDS) {
    error = `watcher silent since ${verdict.checkedAt}${ageSeconds === null ? "" : ` (${age(ageSeconds)} ago)`}: the values below are from then`;
    cells.health = { state: "critical", text: `silent ${ageSeconds === null ? "?" : age(ageSeconds)}`, detail: `${error}; see: systemctl status ${LAYOUT.units.watchTimer}; journalctl -u ${LAYOUT.units.watch} -n 20` };
  } else {
    const what = failing.map((name) => `${name}: ${verdict.checks[name as WatchCheckName].value}`).join("; ");
    cells.health = { state: verdict.state, text: failing.length ? `${verdict.state}: ${failing.join(", ")}` : "ok", ...(failing.length ? { detail: `${what} (docs/runbook.md, An alert fired)` } : {}) };
  }
  cells.release = f.release ? { state: "none", text: f.release } : { state: "warn", text: "none", detail: "no release in Caddy's slot: see the app check" };
  cells.lag = fromCheck("replication", f.replicationLagSeconds === null ? undefined : `${f.replicationLagSeconds} s`);
  cells.fallback = fromCheck("fallback", f.fallbackAgeSeconds === null ? undefined : `${age(f.fallbackAgeSeconds)} ago`);
  const d = f.drill;
  const seconds = (s: number | null) => (s === null ? "?" : `${s} s`);
  cells.drill = fromCheck("drill", d ? `${drillDate(d.at)} ${d.ok ? "ok" : "FAILED"}, ${seconds(d.rpoSeconds)}/${seconds(d.rtoSeconds)}` : undefined);
  const pct = (p: number | null) => (p === null ? "?" : `${p}`);
  const disk = { state: worst([check("volume-disk").state, check("root-disk").state, check("inodes").state]), text: `${pct(f.volumeUsedPercent)}/${pct(f.rootUsedPercent)}/${pct(f.inodesUsedPercent)}` };
  const diskDetails = (["volume-disk", "root-disk", "inodes"] as const).filter((n) => check(n).state !== "ok").map((n) => `${n}: ${check(n).value}`);
  cells.disk = diskDetails.length ? { ...disk, detail: diskDetails.join("; ") } : disk;
  cells.updates = fromCheck("updates");
  cells.certificate = f.certDaysLeft === null && check("certificate").state === "ok" ? { state: "none", text: check("certificate").value } : fromCheck("certificate", f.certDaysLeft === null ? undefined : `${f.certDaysLeft} d`);
  // A version the binary did not report now: the watcher's (hourly) reading.
  if (reading.deno === "" && f.deno) cells.deno = versionCell(f.deno, DENO.version);
  if (reading.litestream === "" && f.litestream) cells.litestream = versionCell(f.litestream, LITESTREAM.version);
  return row(verdict, error, history, ageSeconds);
}

/** `20261201T040000Z` → `2026-12-01`. */
const drillDate = (at: string) => (/^\d{8}T/.test(at) ? `${at.slice(0, 4)}-${at.slice(4, 6)}-${at.slice(6, 8)}` : at);

function versionCell(installed: string, pin: string): Cell {
  if (installed === "") return { state: "warn", text: "?", detail: `not reported by the binary; the kit pins ${pin} (cloud-init/artifacts.ts)` };
  if (installed === pin) return { state: "ok", text: installed };
  return { state: "warn", text: `${installed} ≠ ${pin}`, detail: `${installed} installed, the kit pins ${pin} (cloud-init/artifacts.ts): push it (scripts/deploy.ts)` };
}

function keyCell(keys: ReturnType<typeof backupKeys>, serverKeyId: string, now: number): Cell {
  if ("unknown" in keys) return { state: "none", text: "unknown", detail: keys.unknown };
  const key = keys.keys.find((k) => k.id === serverKeyId) ?? (serverKeyId === "" ? keys.keys[keys.keys.length - 1] : undefined);
  if (!key) return { state: "warn", text: "not in outputs", detail: `the server replicates with ${serverKeyId}, a key the outputs file does not list: see scripts/rotate-keys.ts` };
  const days = Math.floor((now - Date.parse(key.created)) / 86_400_000);
  if (Number.isNaN(days)) return { state: "none", text: "unknown", detail: `created ${key.created}` };
  const text = `${days} d (slot ${key.slot})`;
  return days > KEY_AGE_WARN_DAYS ? { state: "warn", text, detail: `created ${key.created.slice(0, 10)}, ${days} days ago: rotate it (scripts/rotate-keys.ts)` } : { state: "ok", text };
}
