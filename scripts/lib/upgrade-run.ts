/**
 * `scripts/upgrade.ts`: brings a running server to what the kit ships now, as one Plan over one SSH
 * connection, under the deploy lock. Order: read (versions, changed files, pending updates) → lock → stage the
 * new binaries (sha256, they run) → OS security updates → keep a copy of the server files → swap the binaries
 * → push the files (deploy's push: each changed file's declared effect) → restart Litestream on a new binary
 * (SIGTERM: WAL flushed) → the app restarted blue/green (deploy's slot start, switch and stop) when Deno or
 * what the app reads at start changed → replication proven current (a watcher run) → unlock.
 * Any failure after the lock goes back: the previous binaries, the saved files (and their effects), Litestream
 * on the old binary, the app on its old slot; OS packages apt upgraded stay (apt cannot downgrade).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { ServerFile } from "../../cloud-init/server-files.ts";
import { Later, Plan, say, stepLine } from "./cli.ts";
import { lockStep } from "./deploy-lock.ts";
import { inspectStep, planFiles, upstreamRulesFor } from "./deploy-run.ts";
import { OpsError } from "./errors.ts";
import * as steps from "./server-steps.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import type { Step } from "./shell.ts";
import { mapBounded } from "./status.ts";
import { keyValues, otherPort, type Runner } from "./state.ts";
import type { Target } from "./target.ts";
import { changesKit, describePlan, formatUpgradeTable, fromTo, type Installed, planUpgrade, type ServerFacts, shippedArtifacts, type UpgradePlan, type UpgradeRow, binaryVersion } from "./upgrade-plan.ts";
import { discardStaged, osUpdates, PREVIOUS_SUFFIX, readFacts, restartLitestream, restoreArtifacts, restoreFiles, saveFiles, stageArtifact, swapArtifacts, verifyReplication } from "./upgrade-steps.ts";
import { growFilesystem } from "./volume-grow.ts";

export interface UpgradeOptions {
  readonly target: Target;
  readonly runner: Runner;
  readonly dryRun?: boolean;
  /** Seconds the app on its new slot has to become healthy. @default 30 */
  readonly healthSeconds?: number;
  /** Run OS security updates (unattended-upgrade). @default true */
  readonly osUpdates?: boolean;
  /** Where TF_VAR_secret_<NAME> etc. are read (deploy's planFiles). @default process.env */
  readonly processEnv?: NodeJS.ProcessEnv;
  readonly paths?: ServerPaths;
}

export interface UpgradeResult {
  readonly plan: UpgradePlan;
  /** Something of the kit's changed (binaries, files). */
  readonly changed: boolean;
  readonly seconds: number;
}

/** A failed upgrade, after its rollback: `complete` false when a rollback step failed too. */
export class UpgradeFailed extends OpsError {
  readonly plan: UpgradePlan;
  readonly complete: boolean;
  constructor(message: string, fix: string, plan: UpgradePlan, complete: boolean) {
    super(message, fix);
    this.plan = plan;
    this.complete = complete;
  }
}

/** readFacts' stdout → ServerFacts. */
export function parseFacts(stdout: string, artifactNames: readonly string[]): ServerFacts {
  const values = keyValues(stdout);
  const changedFiles = stdout.split("\n").filter((l) => l.startsWith("changed=")).map((l) => l.slice("changed=".length));
  const installed: Record<string, Installed> = {};
  for (const name of artifactNames) installed[name] = { version: binaryVersion(values.get(`version_${name}`) ?? ""), sha256: values.get(`sha256_${name}`) ?? "" };
  const updates = values.get("security_updates") ?? "";
  return { installed, changedFiles, securityUpdates: /^\d+$/.test(updates) ? Number(updates) : null };
}

export async function upgradeServer(options: UpgradeOptions): Promise<UpgradeResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const processEnv = options.processEnv ?? process.env;
  const healthSeconds = options.healthSeconds ?? 30;
  const started = Date.now();
  const plan = new Plan(`upgrade of ${env.stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const files = planFiles(target, state, processEnv);
  const shipped = shippedArtifacts(target.overrides);
  const factsStep = readFacts(shipped, files.files, paths);
  const facts = await plan.read(factsStep.title, async () => parseFacts((await runner.run(factsStep)).stdout, shipped.map((a) => a.name)));
  const up = planUpgrade(env.stackName, facts, shipped, files.files, options.osUpdates ?? true);
  if (options.dryRun) describePlan(up).forEach((line) => say(line));
  if (files.left.length) say(`  left as they are on the server (values not given here): ${files.left.join(", ")}`);

  const changing = up.artifacts.filter((a) => a.kind !== "unchanged");
  const litestream = up.artifacts.find((a) => a.to.name === "litestream")!;
  const oldPort = state.activePort;
  const newPort = otherPort(oldPort, env.app.port);
  const release = state.slots[oldPort] ?? "";
  // The file deploy's switch installs, rendered with `port` as the active slot (as deploy renders it).
  const switchFileFor = (port: number): ServerFile => upstreamRulesFor(target, state, processEnv, port);
  const saved = new Later("the copy of the server files");
  const done = { swapped: false, pushed: [] as string[], litestream: false, started: false, switched: false, oldStopped: false, osUpgraded: "", replication: "" };

  plan.add(lockStep(runner, "upgrade to the kit's pins", paths));
  plan.guard(
    "the previous binaries, the saved server files and their effects, Litestream and the app on what they ran before (OS packages stay upgraded)",
    async (error) => {
      const reason = error instanceof Error ? error.message : String(error);
      say(`\n✗ upgrade of ${env.stackName} failed: ${reason}\n  going back to what the server ran before`);
      const notes = await rollBack();
      const complete = !notes.some((n) => n.startsWith("ROLLBACK STEP FAILED"));
      if (!notes.length) notes.push("nothing of the kit's had been changed yet: the server runs what it ran before");
      if (done.osUpgraded && done.osUpgraded !== "0") notes.push(`${done.osUpgraded} OS packages upgraded by unattended-upgrade stay upgraded (apt cannot go back)`);
      const versions = up.artifacts.map((a) => `${a.to.name} ${a.from.version || "?"}`).join(", ");
      return new UpgradeFailed(
        `upgrade of ${env.stackName} failed${complete ? " and was rolled back" : ", and its rollback is INCOMPLETE"}: ${reason}\n  ${notes.join("\n  ")}`,
        complete
          ? `the server runs what it ran before (${versions}${release ? `, ${release} on ${oldPort}` : ""}). Fix the cause above, then run the upgrade again`
          : `look at the failed rollback step above and finish it by hand (ssh ${runner.destination}); the previous binaries are *${PREVIOUS_SUFFIX} in ${LAYOUT.binDir}${saved.known ? `, the previous files in ${saved.text}/files` : ""}`,
        up,
        complete,
      );
    },
    () => {
      for (const a of changing) plan.remote(runner, () => stageArtifact(a.to));
      if (up.osUpdates) plan.remote(runner, () => osUpdates(), { then: (r) => void (done.osUpgraded = keyValues(r.stdout).get("os_upgraded") ?? "") });
      if (changesKit(up)) {
        plan.remote(runner, () => saveFiles(files.files.map((f) => f.path)), { then: (r) => saved.set(keyValues(r.stdout).get("saved") ?? "") });
        if (changing.length) plan.remote(runner, () => swapArtifacts(changing.map((a) => a.to)), { then: () => void (done.swapped = true) });
        plan.remote(runner, () => steps.pushFiles(files.files, paths), { then: (r) => void done.pushed.push(...r.stdout.split("\n").filter(Boolean)) });
      }
      plan.remote(runner, () => growFilesystem(env.volume.sizeGiB, paths));
      if (up.restartLitestream) plan.add(marked(runner, restartLitestream(litestream.to), () => void (done.litestream = true)));
      if (up.appRestart.length && release) {
        plan.add(marked(runner, steps.startSlot(newPort, release, healthSeconds, paths), () => void (done.started = true)));
        plan.remote(runner, () => steps.switchUpstream(switchFileFor(newPort), newPort, paths), { then: () => void (done.switched = true) });
        plan.add(marked(runner, steps.stopSlot(oldPort), () => void (done.oldStopped = true)));
      }
      plan.remote(runner, () => verifyReplication(), { then: (r) => void (done.replication = keyValues(r.stdout).get("replication") ?? "") });
    },
  );

  /** Undoes what ran, newest layer last to first; each step is tried even if an earlier one failed. */
  async function rollBack(): Promise<string[]> {
    const notes: string[] = [];
    const attempt = async (what: string, s: Step) => {
      stepLine(`rollback: ${s.title}`);
      try {
        await runner.run(s);
        notes.push(`rolled back: ${what}`);
      } catch (error) {
        notes.push(`ROLLBACK STEP FAILED: ${what}: ${(error as Error).message}`);
      }
    };
    const binaries = changing.map((a) => a.to);
    if (done.swapped) await attempt(`${binaries.map((a) => a.name).join(" and ")} ${binaries.length === 1 ? "is the previous binary" : "are the previous binaries"} again`, restoreArtifacts(binaries));
    else if (binaries.length) await runner.run(discardStaged(binaries)).catch(() => undefined);
    // The switch's own file goes back last, once the app is on its old slot again.
    const switchPath = switchFileFor(oldPort).path;
    const pushed = files.files.filter((f) => done.pushed.includes(f.path));
    const first = pushed.filter((f) => f.path !== switchPath);
    const last = pushed.filter((f) => f.path === switchPath);
    if (first.length) await attempt(`${first.length} server files put back from ${saved.text}/files`, restoreFiles(saved.text, first, paths));
    if (done.litestream) await attempt(`Litestream runs ${litestream.from.version || "the previous binary"} again`, restartLitestream({ ...litestream.to, version: litestream.from.version }));
    if (done.oldStopped) await attempt(`app@${oldPort} runs ${release} again`, steps.startSlot(oldPort, release, healthSeconds, paths));
    if (done.switched) await attempt(`the switch leads to 127.0.0.1:${oldPort} again`, steps.switchUpstream(switchFileFor(oldPort), oldPort, paths));
    if (done.started) await attempt(`stopped app@${newPort}`, steps.stopSlot(newPort));
    if (last.length) await attempt(`${switchPath} put back from ${saved.text}/files`, restoreFiles(saved.text, last, paths));
    return notes;
  }

  await plan.execute();
  const seconds = (Date.now() - started) / 1000;
  if (options.dryRun) return { plan: up, changed: false, seconds: 0 };
  const changed = changesKit(up);
  say(`✓ ${env.stackName} ${changed ? "upgraded" : "already runs what the kit ships"} in ${seconds.toFixed(1)} s: ${up.artifacts.map((a) => `${a.to.name} ${a.to.version}`).join(", ")}; replication current (${done.replication || "?"})`);
  if (changed) {
    say(`  undo: run the upgrade from the kit's previous commit (it moves the server back the same way); the previous binaries are kept as *${PREVIOUS_SUFFIX} in ${LAYOUT.binDir}, the replaced files in ${saved.text}/files`);
  }
  return { plan: up, changed, seconds };
}

/** A step whose `mark` runs before it does: a rollback must undo a step that failed half-way (a slot started, then unhealthy). */
function marked(runner: Runner, s: Step, mark: () => void) {
  return {
    title: s.title,
    run: async () => {
      mark();
      await runner.run(s);
    },
  };
}

/** One server of a fleet run: its target, or why there is none (no address): that server fails at once. */
export type FleetItem = { readonly stack: string; readonly target?: Target; readonly problem?: OpsError };

export interface FleetOptions {
  readonly concurrency: number;
  readonly keepGoing: boolean;
  readonly dryRun: boolean;
  readonly upgrade: (target: Target) => Promise<UpgradeResult>;
}

const prefix = new AsyncLocalStorage<string>();
let stderrWrapped = false;
/** With several servers at once, each stderr line a server's upgrade writes starts with `[<stack>] `. */
function prefixStderrLines(): void {
  if (stderrWrapped) return;
  stderrWrapped = true;
  const write = process.stderr.write.bind(process.stderr) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const p = prefix.getStore();
    if (!p) return write(chunk, ...rest);
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return write(text.replace(/^(?=.)/gm, `[${p}] `), ...rest);
  }) as typeof process.stderr.write;
}

/**
 * Upgrades servers, `concurrency` at a time; after the first failure no further server starts (the ones
 * running finish, each rolling itself back if it fails) unless `keepGoing`. Returns the table's rows, in
 * the given order.
 */
export async function upgradeFleet(items: readonly FleetItem[], options: FleetOptions): Promise<UpgradeRow[]> {
  let stopped = false;
  const parallel = options.concurrency > 1 && items.length > 1;
  if (parallel) prefixStderrLines();
  return mapBounded(items, options.concurrency, async (item): Promise<UpgradeRow> => {
    if (stopped) return { stack: item.stack, fromTo: "", result: "not started (an earlier server failed)", seconds: null };
    const started = Date.now();
    const fail = (error: unknown, plan?: UpgradePlan, result = "FAILED") => {
      if (!options.keepGoing) stopped = true;
      const message = error instanceof OpsError ? `${error.message}\n  fix: ${error.fix}` : (error as Error).stack ?? String(error);
      say(`\nerror (${item.stack}): ${message}`);
      return { stack: item.stack, fromTo: plan ? fromTo(plan) : "", result, seconds: (Date.now() - started) / 1000 };
    };
    if (!item.target) return fail(item.problem ?? new Error("no target"), undefined, "FAILED: not reachable");
    const target = item.target;
    const run = () => options.upgrade(target);
    try {
      const result = parallel ? await prefix.run(item.stack, run) : await run();
      const outcome = options.dryRun ? (changesKit(result.plan) ? "would upgrade (dry run)" : "nothing to upgrade (dry run)") : result.changed ? "upgraded" : "unchanged";
      return { stack: item.stack, fromTo: fromTo(result.plan), result: outcome, seconds: options.dryRun ? null : result.seconds };
    } catch (error) {
      if (error instanceof UpgradeFailed) return fail(error, error.plan, error.complete ? "FAILED, rolled back" : "FAILED, ROLLBACK INCOMPLETE");
      return fail(error);
    }
  });
}

export { formatUpgradeTable };
