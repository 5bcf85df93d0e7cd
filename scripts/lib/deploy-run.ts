/**
 * Deploy, as a sequence of Steps over one SSH connection. Safe by default: a lock, a pre-migration
 * snapshot, the new release started beside the old one and health-checked before Caddy switches to it.
 * Any failure goes back to the previous release — and to the snapshot when the migration
 * failed or changed the schema (a migration that changed nothing leaves nothing to undo).
 */
import { hostname, userInfo } from "node:os";
import { LAYOUT } from "../../cloud-init/layout";
import { type ServerFile, type ServerValues, serverFiles } from "../../cloud-init/server-files";
import { stepLine, say } from "./cli";
import { errors, OpsError } from "./errors";
import * as steps from "./server-steps";
import { type ServerPaths, SERVER } from "./server-steps";
import type { Step } from "./shell";
import { StepFailed } from "./ssh";
import { lastLine, otherPort, parseState, type Runner, type ServerState, slotPorts } from "./state";
import type { Target } from "./target";

export interface DeployOptions {
  readonly target: Target;
  readonly runner: Runner;
  /** Git ref to deploy. @default the client file's app.ref */
  readonly ref?: string;
  /** Releases kept on the server. @default 5 */
  readonly keep?: number;
  /** Seconds the new release has to become healthy. @default 30 */
  readonly healthSeconds?: number;
  readonly dryRun?: boolean;
  /** Where TF_VAR_secret_<NAME> and TF_VAR_git_deploy_key are read. @default process.env */
  readonly processEnv?: NodeJS.ProcessEnv;
  readonly paths?: ServerPaths;
}

export interface DeployResult {
  readonly release: string;
  readonly port: number;
  readonly snapshot?: string;
  readonly changedFiles: readonly string[];
  readonly seconds: number;
}

/** The server's files for this environment; secret files only when their values are known here. */
export function planFiles(target: Target, state: ServerState, processEnv: NodeJS.ProcessEnv, activePort = state.activePort): { files: ServerFile[]; left: string[] } {
  const env = target.env;
  const given = env.app.secrets.filter((name) => processEnv[`TF_VAR_secret_${name}`] !== undefined);
  if (given.length > 0 && given.length < env.app.secrets.length) throw errors.partialSecrets(env.app.secrets.filter((n) => !given.includes(n)));
  const values: ServerValues = {
    volumeDevice: state.volumeDevice,
    bucket: target.bucket,
    region: target.region,
    s3Endpoint: target.s3Endpoint ?? (state.s3Endpoint || undefined),
    s3Credentials: {
      accessKeyId: target.credentials?.accessKeyId ?? "",
      secretAccessKey: target.credentials?.secretAccessKey.reveal() ?? "",
    },
    appSecrets: Object.fromEntries(given.map((name) => [name, processEnv[`TF_VAR_secret_${name}`] ?? ""])),
    gitDeployKey: processEnv.TF_VAR_git_deploy_key,
    activePort,
  };
  const left: string[] = [];
  const files = serverFiles(env, values, target.overrides).filter((file) => {
    const unknown =
      (file.path === LAYOUT.s3CredentialsFile && !target.credentials) ||
      (file.path === LAYOUT.appSecretsFile && env.app.secrets.length > 0 && given.length === 0);
    if (unknown) left.push(file.path);
    return !unknown;
  });
  return { files, left };
}

export async function inspectServer(runner: Runner, appPort: number, paths: ServerPaths = SERVER): Promise<ServerState> {
  const state = parseState((await runner.run(steps.inspect(slotPorts(appPort), paths))).stdout);
  if (!state.bootstrapDone) {
    throw new OpsError(
      `${runner.destination} has not finished its first-boot bootstrap`,
      `see why: ssh ${runner.destination} sudo journalctl -u kit-bootstrap.service; deploy once it has finished`,
    );
  }
  return state;
}

/** Takes the lock, runs `body`, always releases the lock. */
export async function withLock<T>(runner: Runner, what: string, paths: ServerPaths, body: () => Promise<T>): Promise<T> {
  const owner = `${what} by ${userInfo().username}@${hostname()} pid ${process.pid} since ${new Date().toISOString()}`;
  stepLine("take the deploy lock");
  const taken = await runner.run(steps.lock(owner, paths), { allowFailure: true, onProgress: () => undefined });
  if (taken.exitCode === 75) {
    throw new OpsError(
      `another operation holds the deploy lock on ${runner.destination}: ${taken.stderr.replace(/^kit: .*? is held: /, "").trim()}`,
      `wait for it to finish. If nothing is running (a crashed deploy), remove the lock:\n     ssh ${runner.destination} sudo rm -r ${paths.deployLock}`,
    );
  }
  if (taken.exitCode !== 0) throw new StepFailed("take the deploy lock", taken, "check the server");
  try {
    return await body();
  } finally {
    stepLine("release the deploy lock");
    await runner.run(steps.unlock(paths)).catch((error) => say(`warning: could not release the lock: ${(error as Error).message}`));
  }
}

/** The push step of a dry run's plan. */
const describePush = (plan: { files: ServerFile[]; left: string[] }) =>
  `push ${plan.files.length} files where they differ${plan.left.length ? `; leave ${plan.left.join(", ")} as they are (values not given here)` : ""}`;

/** Pushes the planned files (only those that differ); returns the paths it changed. */
async function pushPlanned(runner: Runner, plan: { files: ServerFile[]; left: string[] }, paths: ServerPaths): Promise<string[]> {
  const step = steps.pushFiles(plan.files, paths);
  stepLine(step.title);
  const changed = (await runner.run(step)).stdout.split("\n").filter(Boolean);
  if (plan.left.length) say(`  left as they are on the server (values not given here): ${plan.left.join(", ")}`);
  return changed;
}

/**
 * `--config-only`: pushes the configuration that differs (SSH keys, Litestream, Caddy, units, env files)
 * under the deploy lock, and nothing else: no release is fetched, no migration runs, the app keeps running.
 * What a pushed file belongs to is reloaded (sshd, Caddy, Litestream, systemd); the app itself reads its env
 * files only when it starts, so changes to those wait for the next deploy, and the output says so.
 */
export async function pushConfiguration(options: DeployOptions): Promise<DeployResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const started = Date.now();
  stepLine(`inspect ${runner.destination}`);
  const state = await inspectServer(runner, env.app.port, paths);
  const plan = planFiles(target, state, options.processEnv ?? process.env);
  const serving = state.slots[state.activePort] ?? "";
  if (options.dryRun) {
    say(`plan for ${env.stackName} on ${runner.destination} (nothing is changed):`);
    say(`  1. lock ${paths.deployLock}`);
    say(`  2. ${describePush(plan)}`);
    say(`  3. unlock. No release, no migration: the app keeps running on ${state.activePort} (${serving || "?"})`);
    return { release: serving, port: state.activePort, changedFiles: [], seconds: 0 };
  }
  return withLock(runner, "configuration push", paths, async () => {
    const changedFiles = await pushPlanned(runner, plan, paths);
    const seconds = (Date.now() - started) / 1000;
    say(`✓ configuration of ${env.stackName}: ${changedFiles.length ? `${changedFiles.length} file${changedFiles.length === 1 ? "" : "s"} updated` : "already up to date, nothing pushed"}; the app still runs ${serving || `on ${state.activePort}`}`);
    const readAtStart = [LAYOUT.appEnvFile, LAYOUT.appSecretsFile].filter((path) => changedFiles.includes(path));
    if (readAtStart.length) {
      say(`  the app reads ${readAtStart.join(" and ")} when it starts: the change takes effect at the next deploy (npx tsx scripts/deploy.ts ${env.stackName} --ref <ref>)`);
    }
    return { release: serving, port: state.activePort, changedFiles, seconds };
  });
}

export async function deploy(options: DeployOptions): Promise<DeployResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const ref = options.ref ?? env.app.ref;
  const healthSeconds = options.healthSeconds ?? 30;
  const processEnv = options.processEnv ?? process.env;
  const started = Date.now();
  const run = async (step: Step) => {
    stepLine(step.title);
    return runner.run(step);
  };

  stepLine(`inspect ${runner.destination}`);
  const state = await inspectServer(runner, env.app.port, paths);
  const oldPort = state.activePort;
  const newPort = otherPort(oldPort, env.app.port);
  const plan = planFiles(target, state, processEnv);
  const caddyfileFor = (port: number) => planFiles(target, state, processEnv, port).files.find((f) => f.path === paths.caddyfile || f.path === LAYOUT.caddyfile)!;

  if (options.dryRun) {
    say(`plan for ${env.stackName} on ${runner.destination} (nothing is changed):`);
    say(`  1. lock ${paths.deployLock}`);
    say(`  2. ${describePush(plan)}`);
    say(`  3. fetch ${env.app.repo} at ${ref} into a new release`);
    say(`  4. ${state.dbExists ? "snapshot the database into the aside dir" : "no database yet: no snapshot"}; run deno task ${env.app.tasks.migrate}`);
    say(`  5. start the release on 127.0.0.1:${newPort} (now serving: ${oldPort}, ${state.slots[oldPort] || "?"}), health-check ${env.app.healthPath} for ${healthSeconds}s`);
    say(`  6. switch Caddy to ${newPort}, stop app@${oldPort}; keep ${options.keep ?? 5} releases; unlock`);
    say(`  on failure: back to ${oldPort}${state.dbExists ? " and to the snapshot if the migration fails or changes the schema" : ""}`);
    return { release: "", port: newPort, changedFiles: [], seconds: 0 };
  }

  return withLock(runner, `deploy of ${ref}`, paths, async () => {
    const changedFiles = await pushPlanned(runner, plan, paths);
    const release = lastLine((await run(steps.fetchRelease(ref, paths))).stdout);
    const snapshot = state.dbExists ? lastLine((await run(steps.snapshot("pre-deploy", paths))).stdout) : undefined;

    const schemaBefore = snapshot ? lastLine((await runner.run(steps.schemaVersion(paths))).stdout) : undefined;
    let migrated = false;
    let switched = false;
    try {
      migrated = true; // a failing migration may have changed part of the database
      await run(steps.migrate(release, env.app.tasks.migrate, paths));
      // A migration that succeeded without changing the schema leaves nothing to undo: a later failure
      // (health check) then keeps the live database, with the writes made meanwhile.
      if (snapshot) migrated = lastLine((await runner.run(steps.schemaVersion(paths))).stdout) !== schemaBefore;
      await run(steps.startSlot(newPort, release, healthSeconds, paths));
      await run(steps.switchUpstream(caddyfileFor(newPort), newPort, paths));
      switched = true;
      await run(steps.stopSlot(oldPort));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      say(`\n✗ deploy failed: ${reason}\n  rolling back to ${state.slots[oldPort] || `the release on ${oldPort}`}`);
      if (snapshot && !migrated) say(`  the migration changed no schema (schema_version/user_version ${schemaBefore}): the database stays as it is`);
      const notes = await rollBack({ runner, paths, oldPort, newPort, switched, snapshot: migrated ? snapshot : undefined, caddyfile: caddyfileFor(oldPort), healthSeconds, ports: slotPorts(env.app.port) });
      if (snapshot && !migrated) notes.push(`the database was left as it is (the migration changed no schema); pre-deploy snapshot ${snapshot}`);
      throw new OpsError(
        `deploy of ${ref} failed and was rolled back: ${reason}\n  ${notes.join("\n  ")}`,
        `the site runs the previous release. Fix the cause above, then deploy again. Logs: ssh ${runner.destination} sudo journalctl -u app@${newPort}.service`,
      );
    }
    await run(steps.pruneReleases(options.keep ?? 5, paths));
    const seconds = (Date.now() - started) / 1000;
    say(`✓ deployed ${release} on 127.0.0.1:${newPort} in ${seconds.toFixed(1)}s${snapshot ? `; pre-deploy snapshot ${snapshot}` : ""}`);
    return { release, port: newPort, snapshot, changedFiles, seconds };
  });
}

interface RollBack {
  readonly runner: Runner;
  readonly paths: ServerPaths;
  readonly oldPort: number;
  readonly newPort: number;
  readonly switched: boolean;
  readonly snapshot?: string;
  readonly caddyfile: ServerFile;
  readonly healthSeconds: number;
  readonly ports: readonly [number, number];
}

/** Undoes a failed deploy, step by step; each step is tried even if an earlier one failed. Returns what it did. */
async function rollBack(r: RollBack): Promise<string[]> {
  const notes: string[] = [];
  const attempt = async (what: string, step: Step) => {
    stepLine(`rollback: ${step.title}`);
    try {
      const out = await r.runner.run(step);
      notes.push(`rolled back: ${what}`);
      return out.stdout;
    } catch (error) {
      notes.push(`ROLLBACK STEP FAILED: ${what}: ${(error as Error).message}`);
      return "";
    }
  };
  if (r.switched) await attempt(`Caddy proxies to ${r.oldPort} again`, steps.switchUpstream(r.caddyfile, r.oldPort, r.paths));
  await attempt(`stopped app@${r.newPort}`, steps.stopSlot(r.newPort));
  if (r.snapshot) {
    const out = await attempt(`database back to the pre-migration snapshot ${r.snapshot}`, steps.replaceDatabase(r.snapshot, "failed-deploy", "copy", r.oldPort, r.ports, r.healthSeconds, r.paths));
    const aside = out.split("\n").find((l) => l.startsWith("aside="));
    if (aside) notes.push(`the migrated database is kept in ${aside.slice(6)} (writes made during the deploy are there)`);
  }
  return notes;
}

/** `--rollback`: start the release before the active one on the other slot, switch, stop the active one. */
export async function rollbackOne(options: DeployOptions & { readonly to?: string }): Promise<DeployResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const healthSeconds = options.healthSeconds ?? 30;
  const started = Date.now();
  const state = await inspectServer(runner, env.app.port, paths);
  const active = state.activePort;
  const other = otherPort(active, env.app.port);
  const current = state.slots[active] ?? "";
  const index = state.releases.indexOf(current);
  const previous = options.to ?? (index > 0 ? state.releases[index - 1] : undefined);
  if (!previous) {
    throw new OpsError(`no release older than ${current || "the active one"} is left on ${runner.destination}`, `deploy a known-good ref instead: npx tsx scripts/deploy.ts ${env.stackName} --ref <ref>`);
  }
  const caddyfile = (port: number) => planFiles(target, state, options.processEnv ?? process.env, port).files.find((f) => f.path === LAYOUT.caddyfile)!;
  if (options.dryRun) {
    say(`plan: start ${previous} on ${other}, switch Caddy from ${active} to ${other}, stop app@${active}. The database is not changed.`);
    return { release: previous, port: other, changedFiles: [], seconds: 0 };
  }
  return withLock(runner, `rollback to ${previous}`, paths, async () => {
    try {
      stepLine(`start ${previous} on ${other}`);
      await runner.run(steps.startSlot(other, previous, healthSeconds, paths));
    } catch (error) {
      await runner.run(steps.stopSlot(other)).catch(() => undefined);
      throw new OpsError(`the previous release ${previous} does not become healthy: ${(error as Error).message}`, `nothing was switched; the site still runs ${current}. Deploy a fixed ref instead.`);
    }
    stepLine(`switch Caddy to ${other}`);
    await runner.run(steps.switchUpstream(caddyfile(other), other, paths));
    stepLine(`stop app@${active}`);
    await runner.run(steps.stopSlot(active));
    const seconds = (Date.now() - started) / 1000;
    say(`✓ rolled back to ${previous} on 127.0.0.1:${other}. The database was not changed; pre-deploy snapshots: ls ${LAYOUT.asideDir}/pre-deploy-*`);
    say(`  to also return the data to before the last deploy: npx tsx scripts/restore.ts ${env.stackName} --from-file <snapshot>`);
    return { release: previous, port: other, changedFiles: [], seconds };
  });
}
