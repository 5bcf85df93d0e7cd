/**
 * Deploy, as a sequence of Steps over one SSH connection. Safe by default: a lock, a pre-migration
 * snapshot, the new release started beside the old one and health-checked before the switch sends Caddy's
 * new connections to it (server-steps.ts switchUpstream: no Caddy reload).
 * Any failure goes back to the previous release — and to the snapshot when the migration
 * failed or changed the schema (a migration that changed nothing leaves nothing to undo).
 */
import { ALERT_URL_VARIABLES } from "../../app/config/fields.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { type ServerFile, type ServerValues, serverFiles } from "../../cloud-init/server-files.ts";
import { Later, Plan, say, stepLine } from "./cli.ts";
import { lockStep } from "./deploy-lock.ts";
import { errors, OpsError } from "./errors.ts";
import * as steps from "./server-steps.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import type { Step } from "./shell.ts";
import { lastLine, otherPort, parseState, type Runner, type ServerState, slotPorts } from "./state.ts";
import { serverNumber, type Target } from "./target.ts";
import { growFilesystem } from "./volume-grow.ts";

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
  /**
   * Run the migrate task. A rollout across several servers runs it on the first only: they share one
   * PostgreSQL database (rollout.ts). @default true
   */
  readonly migrate?: boolean;
  /** Where TF_VAR_secret_<NAME>, TF_VAR_git_deploy_key and TF_VAR_alert_* are read. @default process.env */
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
    alertUrls: { deadMan: processEnv[`TF_VAR_${ALERT_URL_VARIABLES.deadMan}`], webhook: processEnv[`TF_VAR_${ALERT_URL_VARIABLES.webhook}`] },
    activePort,
    serverIndex: serverNumber(target),
  };
  // alerts.env only when every configured alert's URL is known here: a push must not blank a URL it lacks.
  const alertsUnknown = (["deadMan", "webhook"] as const).some((flag) => env.alerts[flag] && processEnv[`TF_VAR_${ALERT_URL_VARIABLES[flag]}`] === undefined);
  const left: string[] = [];
  const files = serverFiles(env, values, target.overrides).filter((file) => {
    const unknown =
      (file.path === LAYOUT.s3CredentialsFile && !target.credentials) ||
      (file.path === LAYOUT.appSecretsFile && env.app.secrets.length > 0 && given.length === 0) ||
      (file.path === LAYOUT.alertsFile && alertsUnknown);
    if (unknown) left.push(file.path);
    return !unknown;
  });
  return { files, left };
}

/** The deploy switch's rules (LAYOUT.upstreamRules) with `port` as the active slot: what switchUpstream installs. */
export function upstreamRulesFor(target: Target, state: ServerState, processEnv: NodeJS.ProcessEnv, port: number): ServerFile {
  return planFiles(target, state, processEnv, port).files.find((f) => f.path === LAYOUT.upstreamRules)!;
}

export async function inspectServer(runner: Runner, appPort: number, paths: ServerPaths = SERVER): Promise<ServerState> {
  const state = parseState((await runner.run(steps.inspect(slotPorts(appPort), paths))).stdout);
  if (!state.bootstrapDone) {
    throw new OpsError(
      `${runner.destination} has not finished its first-boot bootstrap`,
      `see why: ssh ${runner.destination} sudo journalctl -u ${LAYOUT.units.bootstrap}; deploy once it has finished`,
    );
  }
  return state;
}

/** Inspects the server: the plan's first step, read-only (it runs in a dry run too). */
export function inspectStep(plan: Plan, runner: Runner, appPort: number, paths: ServerPaths): Promise<ServerState> {
  return plan.read(`inspect ${runner.destination}`, () => inspectServer(runner, appPort, paths));
}

/** Adds the push step: only the files that differ are written; `changed` gets the paths it wrote. */
function pushStep(plan: Plan, runner: Runner, files: { files: ServerFile[]; left: string[] }, paths: ServerPaths, changed: string[]): void {
  plan.remote(runner, () => steps.pushFiles(files.files, paths), {
    then: (result) => {
      changed.push(...result.stdout.split("\n").filter(Boolean));
      if (files.left.length) say(`  left as they are on the server (values not given here): ${files.left.join(", ")}`);
    },
  });
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
  const plan = new Plan(`plan for ${env.stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const files = planFiles(target, state, options.processEnv ?? process.env);
  const serving = state.slots[state.activePort] ?? "";
  const changedFiles: string[] = [];
  plan.add(lockStep(runner, "configuration push", paths));
  pushStep(plan, runner, files, paths, changedFiles);
  plan.remote(runner, () => growFilesystem(env.volume.sizeGiB, paths));
  await plan.execute();
  if (options.dryRun) {
    if (files.left.length) say(`  left as they are (values not given here): ${files.left.join(", ")}`);
    say(`  no release, no migration: the app keeps running on ${state.activePort} (${serving || "?"})`);
    return { release: serving, port: state.activePort, changedFiles: [], seconds: 0 };
  }
  const seconds = (Date.now() - started) / 1000;
  say(`✓ configuration of ${env.stackName}: ${changedFiles.length ? `${changedFiles.length} file${changedFiles.length === 1 ? "" : "s"} updated` : "already up to date, nothing pushed"}; the app still runs ${serving || `on ${state.activePort}`}`);
  // Files whose declared effect is the app's next start (server-files.ts).
  const readAtStart = files.files.filter((f) => f.onChange.some((e) => e.kind === "app-start") && changedFiles.includes(f.path)).map((f) => f.path);
  if (readAtStart.length) {
    say(`  the app reads ${readAtStart.join(" and ")} when it starts: the change takes effect at the next deploy (npx zx scripts/deploy.ts ${env.stackName} --ref <ref>)`);
  }
  return { release: serving, port: state.activePort, changedFiles, seconds };
}

export async function deploy(options: DeployOptions): Promise<DeployResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const ref = options.ref ?? env.app.ref;
  const healthSeconds = options.healthSeconds ?? 30;
  const keep = options.keep ?? 5;
  const processEnv = options.processEnv ?? process.env;
  const started = Date.now();

  const plan = new Plan(`plan for ${env.stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const oldPort = state.activePort;
  const newPort = otherPort(oldPort, env.app.port);
  const files = planFiles(target, state, processEnv);
  const rulesFor = (port: number) => upstreamRulesFor(target, state, processEnv, port);

  const changedFiles: string[] = [];
  const release = new Later("the release fetched");
  const snapshot = state.dbExists ? new Later("the snapshot taken") : undefined;
  let schemaBefore: string | undefined;
  // A failing migration may have changed part of the database; one that succeeded without changing the schema
  // leaves nothing to undo: a later failure (health check) then keeps the live database, with the writes made meanwhile.
  let migrated = false;
  let switched = false;

  plan.add(lockStep(runner, `deploy of ${ref}`, paths));
  pushStep(plan, runner, files, paths, changedFiles);
  plan.remote(runner, () => growFilesystem(env.volume.sizeGiB, paths));
  release.description += ` in step ${plan.next}`;
  plan.remote(runner, () => steps.fetchRelease(ref, paths), { then: (r) => release.set(lastLine(r.stdout)) });
  if (snapshot) {
    snapshot.description += ` in step ${plan.next}`;
    plan.remote(runner, () => steps.snapshot("pre-deploy", paths), { then: (r) => snapshot.set(lastLine(r.stdout)) });
    plan.remote(runner, () => steps.schemaVersion(paths), { then: (r) => void (schemaBefore = lastLine(r.stdout)) });
  }
  const rollbackTo = `back to ${state.slots[oldPort] || `the release on ${oldPort}`} on ${oldPort}${snapshot ? ", and the database to the snapshot if the migration failed or changed the schema" : ""}`;
  plan.guard(rollbackTo, async (error) => {
    const reason = error instanceof Error ? error.message : String(error);
    say(`\n✗ deploy failed: ${reason}\n  rolling back to ${state.slots[oldPort] || `the release on ${oldPort}`}`);
    if (snapshot && !migrated) say(`  the migration changed no schema (schema_version/user_version ${schemaBefore}): the database stays as it is`);
    const notes = await rollBack({ runner, paths, oldPort, newPort, switched, snapshot: migrated ? snapshot?.text : undefined, rules: rulesFor(oldPort), healthSeconds, ports: slotPorts(env.app.port) });
    if (snapshot && !migrated) notes.push(`the database was left as it is (the migration changed no schema); pre-deploy snapshot ${snapshot.text}`);
    return new OpsError(
      `deploy of ${ref} failed and was rolled back: ${reason}\n  ${notes.join("\n  ")}`,
      `the site runs the previous release. Fix the cause above, then deploy again. Logs: ssh ${runner.destination} sudo journalctl -u app@${newPort}.service`,
    );
  }, () => {
    if (options.migrate === false) {
      plan.add({ title: `${steps.migrate(release.text, env.app.tasks.migrate, paths).title}: not here, it ran on the first server (the servers share PostgreSQL)`, run: async () => undefined });
    } else plan.add({
      title: steps.migrate(release.text, env.app.tasks.migrate, paths).title,
      run: async () => {
        migrated = true;
        await runner.run(steps.migrate(release.text, env.app.tasks.migrate, paths));
      },
    });
    if (snapshot && options.migrate !== false) {
      plan.add({
        title: `${steps.schemaVersion(paths).title} again (did the migration change it?)`,
        run: async () => void (migrated = lastLine((await runner.run(steps.schemaVersion(paths))).stdout) !== schemaBefore),
      });
    }
    plan.remote(runner, () => steps.startSlot(newPort, release.text, healthSeconds, paths));
    plan.remote(runner, () => steps.switchUpstream(rulesFor(newPort), newPort, paths), { then: () => void (switched = true) });
    plan.remote(runner, () => steps.stopSlot(oldPort));
  });
  plan.remote(runner, () => steps.pruneReleases(keep, paths));

  await plan.execute();
  if (options.dryRun) {
    if (files.left.length) say(`  left as they are (values not given here): ${files.left.join(", ")}`);
    say(`  now serving: ${oldPort} (${state.slots[oldPort] || "?"}); the release goes to ${newPort}`);
    return { release: "", port: newPort, changedFiles: [], seconds: 0 };
  }
  const seconds = (Date.now() - started) / 1000;
  say(`✓ deployed ${release.text} on 127.0.0.1:${newPort} in ${seconds.toFixed(1)}s${snapshot ? `; pre-deploy snapshot ${snapshot.text}` : ""}`);
  return { release: release.text, port: newPort, snapshot: snapshot?.text, changedFiles, seconds };
}

interface RollBack {
  readonly runner: Runner;
  readonly paths: ServerPaths;
  readonly oldPort: number;
  readonly newPort: number;
  readonly switched: boolean;
  readonly snapshot?: string;
  /** The deploy switch's rules for the old slot. */
  readonly rules: ServerFile;
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
  if (r.switched) await attempt(`new connections go to ${r.oldPort} again`, steps.switchUpstream(r.rules, r.oldPort, r.paths));
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
  const plan = new Plan(`plan for ${env.stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const active = state.activePort;
  const other = otherPort(active, env.app.port);
  const current = state.slots[active] ?? "";
  const index = state.releases.indexOf(current);
  const previous = options.to ?? (index > 0 ? state.releases[index - 1] : undefined);
  if (!previous) {
    throw new OpsError(`no release older than ${current || "the active one"} is left on ${runner.destination}`, `deploy a known-good ref instead: npx zx scripts/deploy.ts ${env.stackName} --ref <ref>`);
  }
  const rules = (port: number) => upstreamRulesFor(target, state, options.processEnv ?? process.env, port);
  plan.add(lockStep(runner, `rollback to ${previous}`, paths));
  plan.guard(`stop app@${other} again; nothing was switched, the site still runs ${current}`, async (error) => {
    await runner.run(steps.stopSlot(other)).catch(() => undefined);
    return new OpsError(`the previous release ${previous} does not become healthy: ${(error as Error).message}`, `nothing was switched; the site still runs ${current}. Deploy a fixed ref instead.`);
  }, () => plan.remote(runner, () => steps.startSlot(other, previous, healthSeconds, paths)));
  plan.remote(runner, () => steps.switchUpstream(rules(other), other, paths));
  plan.remote(runner, () => steps.stopSlot(active));
  await plan.execute();
  if (options.dryRun) {
    say(`  the database is not changed.`);
    return { release: previous, port: other, changedFiles: [], seconds: 0 };
  }
  const seconds = (Date.now() - started) / 1000;
  say(`✓ rolled back to ${previous} on 127.0.0.1:${other}. The database was not changed; pre-deploy snapshots: ls ${LAYOUT.asideDir}/pre-deploy-*`);
  say(`  to also return the data to before the last deploy: npx zx scripts/restore.ts ${env.stackName} --from-file <snapshot>`);
  return { release: previous, port: other, changedFiles: [], seconds };
}
