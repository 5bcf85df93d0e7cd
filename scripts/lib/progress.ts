/**
 * Progress of a long step on stderr, so that an operator restoring a large database at night sees it move
 * instead of a silent minute: the step's name first, then every second what it has done so far (bytes,
 * when the step can tell) with the elapsed time, then its result and total time.
 *
 *   ▸ 1/2 restore s3://bucket/prod/litestream (latest) into copy.sqlite3
 *       … 312.0 MiB written (restoring snapshot), 4.0 s
 *     ✓ 1.00 GiB in 12.8 s
 */
import { say } from "./cli.ts";

export interface ProgressOptions {
  /** What the step has done so far, e.g. "312.0 MiB written (restoring snapshot)"; asked at each tick. */
  readonly status?: () => string;
  /** @default 1000 ms */
  readonly everyMs?: number;
  /** @default say (stderr) */
  readonly write?: (line: string) => void;
  /** @default performance.now */
  readonly now?: () => number;
}

export const formatBytes = (bytes: number): string =>
  bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

export const formatElapsed = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * Runs `work` as the step `title`; `summary` says what it produced (the total line). A step that fails
 * prints no total: its error says what happened.
 */
export async function withProgress<T>(title: string, work: () => Promise<T>, summary: (result: T) => string, o: ProgressOptions = {}): Promise<T> {
  const write = o.write ?? say;
  const now = o.now ?? (() => performance.now());
  const started = now();
  write(`▸ ${title}`);
  const timer = setInterval(() => {
    const status = o.status?.();
    write(`    … ${status ? `${status}, ` : ""}${formatElapsed(now() - started)}`);
  }, o.everyMs ?? 1000);
  try {
    const result = await work();
    write(`  ✓ ${summary(result)} in ${formatElapsed(now() - started)}`);
    return result;
  } finally {
    clearInterval(timer);
  }
}
