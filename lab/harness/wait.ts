/** Bounded waits: every wait in the e2e suite has a limit and says what it was waiting for when it gives up. */
import { seconds, sleep } from "./process.ts";

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

export class WaitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WaitError";
  }
}

/** Thrown by a check to stop waiting at once: the awaited state can no longer come (a process died). */
export class GiveUp extends Error {}

/**
 * Calls `check` until it returns a truthy value (which is returned) or the time is up. A check that throws
 * counts as "not yet" (unless it throws GiveUp); the last error or value is reported in the timeout message.
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
      if (error instanceof GiveUp) return fail(`gave up waiting for ${options.what}: ${(error as Error).message}`, options);
    }
    if (Date.now() - started >= options.timeoutMs) break;
    await sleep(Math.min(options.intervalMs ?? 500, Math.max(0, options.timeoutMs - (Date.now() - started))));
  }
  return fail(`timed out after ${seconds(options.timeoutMs)} waiting for ${options.what}; ${last}`, options);
}

async function fail(message: string, options: WaitOptions): Promise<never> {
  const context = options.diagnostics ? await options.diagnostics().catch((error: Error) => `(diagnostics failed: ${error.message})`) : "";
  throw new WaitError(message + (context ? `\n\n${context}` : ""));
}
