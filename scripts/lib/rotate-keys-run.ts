/**
 * Rotating the backup user's access key without a gap (scripts/rotate-keys.ts, runbook "Rotating the backup
 * key"). AWS allows two keys per IAM user; the stack keeps them in two slots (`backups.accessKeys`, oldest
 * first; stacks/backup-bucket.ts). A rotation walks from one key to the other, and at every point the key the
 * server replicates with exists:
 *
 *   1. new key in the free slot           you: accessKeys ["a", "b"], cdktf deploy (outputs file rewritten)
 *   2. push it to the server              /etc/kit/s3.env, as every deploy pushes it
 *   3. restart Litestream                 it reads s3.env only when it starts; flushes its WAL on SIGTERM
 *   4. prove replication with it          restore-drill.service: a sentinel written now is restored from S3
 *   5. retire the old slot                you: accessKeys ["b"], cdktf deploy (the old key is deleted)
 *
 * Where the rotation stands is read every run, never remembered: from the client file, the outputs file
 * (`access_keys`, written by cdktf deploy) and the server (the key id in s3.env and the one the running
 * Litestream has in its environment). So a run that stopped anywhere continues where it stopped.
 *
 * Steps 1 and 5 are the operator's: the client file is code the team reviews and commits, and `cdktf deploy`
 * needs the cloud's admin credentials and a person reading its plan (it must add or delete one
 * aws_iam_access_key and replace nothing). The script prints the exact edit and command and stops there.
 */
import { existsSync } from "node:fs";
import { relative } from "node:path";
import { ACCESS_KEY_SLOTS, type AccessKeySlot } from "../../app/config/fields.ts";
import { REPO_ROOT } from "../../app/repo.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { ACCESS_KEY_IDS } from "../../stacks/backup-bucket.ts";
import { Plan, say } from "./cli.ts";
import { lockStep } from "./deploy-lock.ts";
import { inspectStep, planFiles } from "./deploy-run.ts";
import type { DrillReport } from "./drill-run.ts";
import { OpsError } from "./errors.ts";
import * as steps from "./server-steps.ts";
import { type ServerPaths, SERVER } from "./server-steps.ts";
import { bash, join, step, type Step } from "./shell.ts";
import { keyValues, type Runner } from "./state.ts";
import { readOutputs, type Target } from "./target.ts";

/** One entry of the stack's `access_keys` output (stacks/client-stack.ts). */
export interface OutputKey {
  readonly slot: AccessKeySlot;
  readonly id: string;
  /** RFC 3339 (IAM's create_date). */
  readonly created: string;
}

/** Everything the rotation's state is read from. */
export interface RotationFacts {
  readonly stackName: string;
  /** The client file, relative to the repo (for the edit the operator makes). */
  readonly clientFile: string;
  /** `environments.<name>` in the client file. */
  readonly environment: string;
  readonly outputsFile: string;
  /** `backups.accessKeys` in the client file. */
  readonly clientSlots: readonly AccessKeySlot[];
  /** The `access_keys` output, oldest first. */
  readonly outputKeys: readonly OutputKey[];
  /** The key id in the server's s3.env ("" when none). */
  readonly serverKey: string;
  /** `systemctl is-active` of Litestream and the key id in its environment ("" when not running). */
  readonly litestream: { readonly state: string; readonly key: string };
}

/** What is left to do, in order. A `deploy` is the operator's (edit + cdktf deploy): the run stops there. */
export type RotationAction =
  | { readonly kind: "deploy"; readonly why: "add" | "retire" | "apply"; readonly slots: readonly AccessKeySlot[] }
  | { readonly kind: "push"; readonly key: OutputKey }
  | { readonly kind: "restart"; readonly key: OutputKey }
  | { readonly kind: "prove"; readonly key: OutputKey };

const show = (slots: readonly AccessKeySlot[]) => JSON.stringify(slots).replace(/,/g, ", ");
const sameSlots = (a: readonly AccessKeySlot[], b: readonly AccessKeySlot[]) => a.length === b.length && a.every((s, i) => s === b[i]);
const named = (key: OutputKey) => `slot ${key.slot} (${key.id})`;
/** A path as the operator types it: relative to the repo when it is inside it. */
const shown = (path: string) => (relative(REPO_ROOT, path).startsWith("..") ? path : relative(REPO_ROOT, path));

/**
 * The rotation's next actions, up to and including the next operator step, from where it stands. Refuses
 * (OpsError) what would open a gap: a client file that drops the key the server still uses.
 */
export function rotationActions(f: RotationFacts): RotationAction[] {
  const newest = f.outputKeys[f.outputKeys.length - 1];
  const outputSlots = f.outputKeys.map((k) => k.slot);
  if (f.litestream.state !== "active") throw rotationErrors.litestreamDown(f);
  if (!sameSlots(f.clientSlots, outputSlots)) {
    // The client file was edited and not applied yet (or the outputs file is older than the last deploy).
    for (const used of new Set([f.serverKey, f.litestream.key])) {
      const key = f.outputKeys.find((k) => k.id === used);
      if (key && !f.clientSlots.includes(key.slot)) throw rotationErrors.dropsUsedKey(f, key);
    }
    return [{ kind: "deploy", why: "apply", slots: f.clientSlots }];
  }
  const actions: RotationAction[] = [];
  if (f.serverKey !== newest.id) actions.push({ kind: "push", key: newest });
  if (actions.length || f.litestream.key !== newest.id) actions.push({ kind: "restart", key: newest });
  if (f.outputKeys.length === 2) {
    actions.push({ kind: "prove", key: newest }, { kind: "deploy", why: "retire", slots: [newest.slot] });
  } else if (actions.length) {
    // One key, and the server was not using it: it is now; prove it.
    actions.push({ kind: "prove", key: newest });
  } else {
    const free = ACCESS_KEY_SLOTS.find((s) => s !== newest.slot)!;
    actions.push({ kind: "deploy", why: "add", slots: [newest.slot, free] });
  }
  return actions;
}

/** The step title of an action (what --dry-run lists and the run logs). */
export function actionTitle(action: RotationAction, f: RotationFacts): string {
  switch (action.kind) {
    case "deploy": {
      const set = `set backups.accessKeys to ${show(action.slots)} and run cdktf deploy`;
      if (action.why === "add") return `new key in slot ${action.slots[1]}: you ${set}`;
      if (action.why === "retire") return `retire the old key (slot ${f.outputKeys[0].slot}): you ${set}`;
      return `apply the client file's backups.accessKeys ${show(action.slots)} (the outputs file lists ${show(f.outputKeys.map((k) => k.slot))}): you run cdktf deploy`;
    }
    case "push":
      return `push the key of ${named(action.key)} to ${LAYOUT.s3CredentialsFile}`;
    case "restart":
      return `restart Litestream with the key of ${named(action.key)}`;
    case "prove":
      return `prove replication with the key of ${named(action.key)} (restore drill: a row written now is restored from the bucket)`;
  }
}

/** What the operator does for a `deploy` action, as lines to print. */
export function operatorInstructions(action: Extract<RotationAction, { kind: "deploy" }>, f: RotationFacts): string[] {
  const outputs = shown(f.outputsFile);
  const resource = (slot: AccessKeySlot) => `aws_iam_access_key.Backups_${ACCESS_KEY_IDS[slot]}_…`;
  const added = action.slots.filter((s) => !f.outputKeys.some((k) => k.slot === s));
  const removed = f.outputKeys.filter((k) => !action.slots.includes(k.slot)).map((k) => k.slot);
  const plan = [...added.map((s) => `creates ${resource(s)}`), ...removed.map((s) => `destroys ${resource(s)}`)].join(" and ");
  return [
    ...(action.why === "apply" ? [] : [`in ${f.clientFile}, set environments.${f.environment}.backups.accessKeys to ${show(action.slots)} (this environment only), then:`]),
    `npx cdktf deploy ${f.stackName} --outputs-file ${outputs} --outputs-file-include-sensitive-outputs`,
    `its plan ${plan || "changes no key"} and updates outputs; the droplet's user data is ignored. Stop if it replaces anything.`,
    ...(action.why === "retire" ? [`from then on the old key is refused; the server already uses the new one`] : []),
    `then run this again: npx zx scripts/rotate-keys.ts ${f.stackName}`,
  ];
}

export const rotationErrors = {
  noOutputsFile: (stack: string, file: string) =>
    new OpsError(
      `no outputs file ${file}: the rotation reads the stack's keys (access_keys) from it`,
      `write it: npx cdktf output ${stack} --outputs-file ${file} --outputs-file-include-sensitive-outputs (or pass --outputs FILE)`,
    ),
  noAccessKeysOutput: (stack: string, file: string) =>
    new OpsError(
      `${file} has no access_keys output for ${stack}: it was written by an older kit, or not by cdktf`,
      `rewrite it (changes no key): npx cdktf deploy ${stack} --outputs-file ${file} --outputs-file-include-sensitive-outputs`,
    ),
  badAccessKeysOutput: (file: string, value: unknown) =>
    new OpsError(
      `${file}: access_keys is ${JSON.stringify(value)}, not one or two {slot, id, created} entries of slots ${ACCESS_KEY_SLOTS.join("/")}`,
      `rewrite it: npx cdktf output <stack> --outputs-file ${file} --outputs-file-include-sensitive-outputs`,
    ),
  secretOfOtherKey: (f: RotationFacts, key: OutputKey, id: string | undefined) =>
    new OpsError(
      `${f.outputsFile}: the server must get the key of ${named(key)}, but the file's key pair is ${id ? `${id}'s` : "missing (no sensitive outputs)"}`,
      `rewrite it with the secret: npx cdktf output ${f.stackName} --outputs-file ${f.outputsFile} --outputs-file-include-sensitive-outputs`,
    ),
  dropsUsedKey: (f: RotationFacts, key: OutputKey) =>
    new OpsError(
      `${f.clientFile}: environments.${f.environment}.backups.accessKeys is ${show(f.clientSlots)}: it drops ${named(key)}, ` +
        `the key the server still replicates with; deploying it would stop the backups`,
      `set it back to ${show(f.outputKeys.map((k) => k.slot))} and run this again: it pushes the new key and proves it before the old one may go`,
    ),
  litestreamDown: (f: RotationFacts) =>
    new OpsError(
      `Litestream is not running on the server of ${f.stackName} (${f.litestream.state || "unknown"}): replication is off, so no key can be proven`,
      `find out why and start it: journalctl -u ${LAYOUT.units.litestream}; sudo systemctl start ${LAYOUT.units.litestream}; then run this again`,
    ),
  notProven: (key: OutputKey, why: string, destination: string) =>
    new OpsError(
      `replication with the key of ${named(key)} is not proven: ${why}`,
      `the old key still exists, so nothing is lost yet. See: ssh ${destination} sudo journalctl -u ${LAYOUT.units.litestream} -n 50 ` +
        `(InvalidAccessKeyId right after cdktf deploy: IAM needs a moment; wait a minute), then run this again`,
    ),
};

/** The `access_keys` output, checked. */
export function outputKeysOf(file: string, stack: string): OutputKey[] {
  if (!existsSync(file)) throw rotationErrors.noOutputsFile(stack, file);
  const value = (readOutputs(file, stack) as { access_keys?: unknown }).access_keys;
  if (value === undefined) throw rotationErrors.noAccessKeysOutput(stack, file);
  const valid =
    Array.isArray(value) &&
    value.length >= 1 &&
    value.length <= 2 &&
    value.every((k) => ACCESS_KEY_SLOTS.includes(k?.slot) && typeof k.id === "string" && k.id !== "" && typeof k.created === "string");
  if (!valid) throw rotationErrors.badAccessKeysOutput(file, value);
  return value as OutputKey[];
}

/** Prints the access key id Litestream runs with (its environment; the secret is never read out). */
const runningKey = bash`running_key() {
  local pid
  pid=$(systemctl show -p MainPID --value ${LAYOUT.units.litestream} 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/environ" ]; then
    tr '\\0' '\\n' <"/proc/$pid/environ" | sed -n 's/^AWS_ACCESS_KEY_ID=//p'
  fi
}`;

/** Reads the key id in s3.env and the state and key of the running Litestream (read-only). */
export function readServerKeys(paths: ServerPaths = SERVER): Step {
  return step(
    "read the key the server's s3.env and Litestream use",
    join(
      bash`. ${paths.kitEnvFile}`,
      runningKey,
      bash`echo "s3_credentials_file=$S3_CREDENTIALS_FILE"
echo "server_key=$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' "$S3_CREDENTIALS_FILE" 2>/dev/null | tr -d "\\"'" || true)"
echo "litestream_state=$(systemctl is-active ${LAYOUT.units.litestream} 2>/dev/null || true)"
echo "litestream_key=$(running_key)"`,
    ),
    true,
  );
}

/** Restarts Litestream unless it already runs with `keyId` (the push's own restart), then checks it does. */
export function restartWithKey(keyId: string, title: string, paths: ServerPaths = SERVER): Step {
  return step(
    title,
    join(
      bash`. ${paths.kitEnvFile}`,
      runningKey,
      bash`want=${keyId}
if [ "$(running_key)" = "$want" ]; then
  echo "kit: Litestream already replicates with $want (restarted when s3.env changed)" >&2
else
  echo "kit: restarting Litestream (it uploads its pending WAL before it stops)" >&2
  systemctl restart ${LAYOUT.units.litestream}
fi
for _ in $(seq 1 60); do
  [ "$(systemctl is-active ${LAYOUT.units.litestream} || true)" = active ] && [ "$(running_key)" = "$want" ] && break
  sleep 0.5
done
got=$(running_key)
if [ "$got" != "$want" ]; then
  echo "kit: Litestream runs with \${got:-no key} ($(systemctl is-active ${LAYOUT.units.litestream} || true)), not $want; see: journalctl -u ${LAYOUT.units.litestream}" >&2
  exit 1
fi
echo "kit: Litestream replicates with $want" >&2`,
    ),
  );
}

/**
 * Runs the restore drill (the unit its timer runs: a sentinel row written now, waited for in the replica,
 * restored into scratch) and prints `started=` (server time) and `report=` (its JSON, or empty).
 */
export function proveReplication(title: string, paths: ServerPaths = SERVER): Step {
  return step(
    title,
    join(
      bash`. ${paths.kitEnvFile}`,
      bash`started=$(date -u +%Y%m%dT%H%M%SZ)
if ! systemctl start ${LAYOUT.units.drill}; then
  journalctl -u ${LAYOUT.units.drill} -n 30 -o cat --no-pager >&2 || true
fi
echo "started=$started"
echo "report=$(cat "$DRILL_DIR/latest.json" 2>/dev/null || true)"`,
    ),
  );
}

/** The drill's report from proveReplication's output, or why it proves nothing. */
export function provenBy(stdout: string): { report?: DrillReport; why?: string } {
  const values = keyValues(stdout);
  let report: DrillReport;
  try {
    report = JSON.parse(values.get("report") ?? "") as DrillReport;
  } catch {
    return { why: "the drill wrote no report" };
  }
  // The report must be this run's: a drill that died early leaves the previous one in place.
  if (!(report.at >= (values.get("started") ?? ""))) return { why: `the newest drill report is from ${report.at}, before this run` };
  if (report.rpo_ms === null) return { why: "the drill's sentinel never reached the replica" };
  if (!report.ok) return { why: `the drill failed (integrity ${report.integrity}, ${report.missing_tables} tables missing in the restore)` };
  return { report };
}

export interface RotateOptions {
  readonly target: Target;
  readonly runner: Runner;
  readonly dryRun?: boolean;
  readonly paths?: ServerPaths;
}

export interface RotateResult {
  /** Where it stopped: the operator's next deploy, or nothing left ("at rest": one key, the server uses it). */
  readonly waitingFor?: RotationAction & { readonly kind: "deploy" };
  /** A rotation is under way (two keys, or a client file not applied yet): the operator has a step to do. */
  readonly rotating: boolean;
  readonly actions: readonly RotationAction[];
  readonly rpoMs?: number;
}

/** Reads where the rotation stands and runs what is left, up to the operator's next step. */
export async function rotateKeys(options: RotateOptions): Promise<RotateResult> {
  const { target, runner } = options;
  const env = target.env;
  const paths = options.paths ?? SERVER;
  const plan = new Plan(`key rotation plan for ${env.stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const outputKeys = await plan.read(`read the backup keys of the client file and ${shown(target.outputsFile)}`, async () =>
    outputKeysOf(target.outputsFile, env.stackName),
  );
  const state = await inspectStep(plan, runner, env.app.port, paths);
  const server = keyValues((await plan.read(readServerKeys(paths).title, () => runner.run(readServerKeys(paths)))).stdout);
  const facts: RotationFacts = {
    stackName: env.stackName,
    clientFile: shown(env.sourceFile),
    environment: env.environment,
    outputsFile: target.outputsFile,
    clientSlots: env.backups.accessKeys,
    outputKeys,
    serverKey: server.get("server_key") ?? "",
    litestream: { state: server.get("litestream_state") ?? "", key: server.get("litestream_key") ?? "" },
  };
  say(describeFacts(facts));
  const actions = rotationActions(facts);
  const title = (a: RotationAction) => actionTitle(a, facts);
  let rpoMs: number | undefined;

  if (actions.some((a) => a.kind !== "deploy")) plan.add(lockStep(runner, "backup key rotation", paths));
  for (const action of actions) {
    if (action.kind === "push") {
      // s3.env exactly as deploys render it (server-files.ts), from the outputs' key pair: it must be this key's.
      const credentials = target.credentials;
      if (credentials?.accessKeyId !== action.key.id) throw rotationErrors.secretOfOtherKey(facts, action.key, credentials?.accessKeyId);
      const file = planFiles(target, state, {}).files.find((f) => f.path === LAYOUT.s3CredentialsFile)!;
      // Written where the server's kit.env says its units read it (LAYOUT.s3CredentialsFile on a server).
      const push = steps.pushFiles([{ ...file, path: server.get("s3_credentials_file") || file.path }], paths);
      plan.add({ title: title(action), run: async () => void (await runner.run(push)) });
    } else if (action.kind === "restart") {
      plan.remote(runner, () => restartWithKey(action.key.id, title(action), paths));
    } else if (action.kind === "prove") {
      plan.remote(runner, () => proveReplication(title(action), paths), {
        then: (result) => {
          const { report, why } = provenBy(result.stdout);
          if (!report) throw rotationErrors.notProven(action.key, why!, runner.destination);
          rpoMs = report.rpo_ms ?? undefined;
          say(`  ✓ a row written at ${report.at} reached the replica in ${((report.rpo_ms ?? 0) / 1000).toFixed(1)} s with the key of ${named(action.key)}; restored, integrity ${report.integrity}`);
        },
      });
    } else {
      plan.add({
        title: title(action),
        run: async () => {
          for (const line of operatorInstructions(action, facts)) say(`  │ ${line}`);
          return "stop";
        },
      });
    }
  }
  await plan.execute();
  const last = actions[actions.length - 1];
  const waitingFor = last.kind === "deploy" ? last : undefined;
  // At rest: one key, the server replicates with it; the step left is the start of the next rotation.
  const atRest = waitingFor?.why === "add";
  if (!options.dryRun) {
    if (atRest) say(`✓ ${env.stackName} is at rest: one backup key, ${named(outputKeys[0])}, ${age(outputKeys[0])}; the server replicates with it. To rotate it, do the step above.`);
    else if (waitingFor) say(`… ${env.stackName}: the rotation waits for the step above (yours); then run this again.`);
    else say(`✓ ${env.stackName}: the server replicates with the only key, ${named(outputKeys[0])}.`);
  }
  return { waitingFor, rotating: waitingFor !== undefined && !atRest, actions, rpoMs };
}

const age = (key: OutputKey) => {
  const days = Math.floor((Date.now() - Date.parse(key.created)) / 86_400_000);
  return Number.isNaN(days) ? `created ${key.created}` : `created ${key.created.slice(0, 10)} (${days} day${days === 1 ? "" : "s"} ago)`;
};

/** Where the rotation stands, in the operator's words. */
export function describeFacts(f: RotationFacts): string {
  const whose = (id: string) => {
    const key = f.outputKeys.find((k) => k.id === id);
    return key ? `slot ${key.slot}` : id ? `${id}, a key the outputs do not list` : "none";
  };
  return [
    `  backup keys of ${f.stackName}:`,
    `    client file   backups.accessKeys ${show(f.clientSlots)}`,
    `    outputs       ${f.outputKeys.map((k) => `${named(k)} ${age(k)}`).join("; ")}`,
    `    server        s3.env: ${whose(f.serverKey)}; Litestream (${f.litestream.state || "?"}): ${whose(f.litestream.key)}`,
  ].join("\n");
}
