/** Bounded waits: every wait in the e2e suite has a limit and says what it was waiting for when it gives up. */
import { seconds, sleep } from "./process";

export interface WaitOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  /** What we wait for, as it should read in the failure: "the app to answer /healthz on :8000". */
  readonly what: string;
  /** Pause between checks. @default 500 */
  readonly intervalMs?: number;
  /** Extra context appended to the failure (e.g. the machine's failed units and logs). */
  readonly diagnostics?: () => Promise<string>;
}

export class WaitTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WaitTimeoutError";
  }
}

/**
 * Calls `check` until it returns a truthy value (which is returned) or the time is up. A check that throws
 * counts as "not yet"; the last error or value is reported in the timeout message.
 */
export async function waitFor<T>(check: () => Promise<T> | T, options: WaitOptions): Promise<NonNullable<T>> {
  const started = Date.now();
  let last = "the check never completed";
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = `last check returned ${JSON.stringify(value)}`;
    } catch (error) {
      last = `last check failed: ${(error as Error).message}`;
    }
    if (Date.now() - started >= options.timeoutMs) break;
    await sleep(Math.min(options.intervalMs ?? 500, Math.max(0, options.timeoutMs - (Date.now() - started))));
  }
  const context = options.diagnostics ? await options.diagnostics().catch((error: Error) => `(diagnostics failed: ${error.message})`) : "";
  throw new WaitTimeoutError(
    `timed out after ${seconds(options.timeoutMs)} waiting for ${options.what}; ${last}` + (context ? `\n\n${context}` : ""),
  );
}
