/**
 * The deploy lock: an atomic `mkdir` of LAYOUT.deployLock on the server, with an owner note. deploy.ts and
 * restore.ts hold it while they change the server; a plan takes it as a step and releases it as its last
 * step, also after a failure. A reboot clears it (/run is a tmpfs).
 */
import { hostname, userInfo } from "node:os";
import type { PlanStep } from "./cli.ts";
import { say, stepLine } from "./cli.ts";
import { OpsError } from "./errors.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import { bash, step, type Step } from "./shell.ts";
import { StepFailed } from "./ssh.ts";
import type { Runner } from "./state.ts";

/** Takes the deploy lock: an atomic mkdir; fails with the holder's note when it is taken. */
export function lock(owner: string, paths: ServerPaths = SERVER): Step {
  return step(
    "take the deploy lock",
    bash`mkdir -p "$(dirname ${paths.deployLock})"
if ! mkdir ${paths.deployLock} 2>/dev/null; then
  echo "kit: the deploy lock ${paths.deployLock} is held: $(cat ${paths.deployLock}/owner 2>/dev/null || echo 'no owner note')" >&2
  exit 75
fi
printf '%s\\n' ${owner} >${paths.deployLock}/owner`,
  );
}

export function unlock(paths: ServerPaths = SERVER): Step {
  return step("release the deploy lock", bash`rm -f ${paths.deployLock}/owner && rmdir ${paths.deployLock}`);
}

async function takeLock(runner: Runner, what: string, paths: ServerPaths): Promise<void> {
  const owner = `${what} by ${userInfo().username}@${hostname()} pid ${process.pid} since ${new Date().toISOString()}`;
  const taken = await runner.run(lock(owner, paths), { allowFailure: true, onProgress: () => undefined });
  if (taken.exitCode === 75) {
    throw new OpsError(
      `another operation holds the deploy lock on ${runner.destination}: ${taken.stderr.replace(/^kit: .*? is held: /, "").trim()}`,
      `wait for it to finish. If nothing is running (a crashed deploy), remove the lock:\n     ssh ${runner.destination} sudo rm -r ${paths.deployLock}`,
    );
  }
  if (taken.exitCode !== 0) throw new StepFailed("take the deploy lock", taken, "check the server");
}

const releaseLock = (runner: Runner, paths: ServerPaths) =>
  runner.run(unlock(paths)).then(
    () => undefined,
    (error) => void say(`warning: could not release the lock: ${(error as Error).message}`),
  );

/** The plan's lock step: takes the deploy lock; its cleanup, the plan's last step, releases it. */
export function lockStep(runner: Runner, what: string, paths: ServerPaths): PlanStep {
  return {
    title: lock("", paths).title,
    run: () => takeLock(runner, what, paths),
    cleanup: { title: unlock(paths).title, run: () => releaseLock(runner, paths) },
  };
}

/** Takes the lock, runs `body`, always releases the lock. */
export async function withLock<T>(runner: Runner, what: string, paths: ServerPaths, body: () => Promise<T>): Promise<T> {
  const lock = lockStep(runner, what, paths);
  stepLine(lock.title);
  await lock.run();
  try {
    return await body();
  } finally {
    stepLine(lock.cleanup!.title);
    await lock.cleanup!.run();
  }
}

