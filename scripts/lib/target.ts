/**
 * Host facts of a client environment: the client file (app/clients/*.ts) gives names, bucket, region and
 * ports; the stack's outputs give the server's address and the backup user's key pair; flags override both.
 *
 * Outputs file: `outputs/<stack>.json`, written by
 *   npx cdktf output <stack> --outputs-file outputs/<stack>.json --outputs-file-include-sensitive-outputs
 * (or by `cdktf deploy` with the same two flags). Its shape is `{ "<stack>": { "ipv4": …, … } }`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AGENCY } from "../../app/agency.ts";
import { loadClientsDir } from "../../app/config/load.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { RenderOverrides } from "../../cloud-init/server-files.ts";
import { errors, OpsError } from "./errors.ts";
import { Secret } from "./secret.ts";
import type { SshSettings, SshTarget } from "./ssh.ts";

import { REPO_ROOT } from "../../app/repo.ts";

export { REPO_ROOT };

/** The outputs of stacks/client-stack.ts, as cdktf writes them. */
export interface StackOutputs {
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly ssh_user?: string;
  readonly bucket?: string;
  readonly region?: string;
  readonly replica_path?: string;
  readonly replica_url?: string;
  readonly app_port?: number;
  readonly access_key_id?: string;
  readonly secret_access_key?: string;
}

/** Flags every script takes (see `--help`). */
export interface TargetFlags {
  readonly outputs?: string;
  readonly host?: string;
  readonly user?: string;
  readonly port?: number;
  readonly identity?: string;
  readonly knownHosts?: string;
  readonly s3Endpoint?: string;
  readonly renderOverrides?: string;
}

export interface Target {
  readonly env: ResolvedEnvironment;
  readonly outputsFile: string;
  readonly ssh: SshTarget;
  readonly sshSettings: SshSettings;
  readonly bucket: string;
  readonly region: string;
  /** Key prefix of the Litestream replica. */
  readonly replicaPath: string;
  readonly s3Endpoint?: string;
  /** The backup user's key pair, when known here (outputs with sensitive values, or the environment). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: Secret };
  /** Test/mirror knobs for re-rendering the server's files (JSON file of RenderOverrides). */
  readonly overrides: RenderOverrides;
}

/** The client environment `stackName` from the client files in `clientsDir` (default app/clients), validated. */
export function loadEnvironment(stackName: string, clientsDir?: string): ResolvedEnvironment {
  const dir = clientsDir === undefined ? join(REPO_ROOT, "app", "clients") : resolve(clientsDir);
  if (!existsSync(dir)) throw errors.noClientsDir(clientsDir ?? dir);
  const all = loadClientsDir(AGENCY, dir, REPO_ROOT);
  const env = all.find((e) => e.stackName === stackName);
  if (!env) throw errors.unknownStack(stackName, all.map((e) => e.stackName));
  return env;
}

export function readOutputs(file: string, stackName: string): StackOutputs {
  if (!existsSync(file)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw errors.badOutputs(file, (error as Error).message);
  }
  const all = parsed as Record<string, unknown>;
  const outputs = (all[stackName] ?? all) as StackOutputs;
  if (typeof outputs !== "object" || outputs === null) throw errors.badOutputs(file, `no object for ${stackName}`);
  return outputs;
}

/** Resolves where and how to reach a stack's server and bucket. Flags win over outputs, outputs over defaults. */
export function resolveTarget(env: ResolvedEnvironment, flags: TargetFlags, processEnv: NodeJS.ProcessEnv = process.env, options: { needHost?: boolean } = {}): Target {
  const outputsFile = flags.outputs ?? join(REPO_ROOT, "outputs", `${env.stackName}.json`);
  const outputs = readOutputs(outputsFile, env.stackName);
  const host = flags.host ?? outputs.ipv4;
  if (!host && options.needHost !== false) throw errors.noHost(env.stackName, outputsFile);
  const bucket = outputs.bucket ?? env.names.bucket;
  if (bucket !== env.names.bucket) {
    throw new OpsError(`${outputsFile} names bucket ${bucket}, the client file ${env.names.bucket}`, `rewrite the outputs file for ${env.stackName} (see --help)`);
  }
  const keyId = outputs.access_key_id ?? processEnv.LITESTREAM_ACCESS_KEY_ID;
  const secret = outputs.secret_access_key ?? processEnv.LITESTREAM_SECRET_ACCESS_KEY;
  let overrides: RenderOverrides = {};
  if (flags.renderOverrides) {
    try {
      overrides = JSON.parse(readFileSync(flags.renderOverrides, "utf8")) as RenderOverrides;
    } catch (error) {
      throw new OpsError(`cannot read --render-overrides ${flags.renderOverrides}: ${(error as Error).message}`, "pass a JSON file of RenderOverrides (cloud-init/server-files.ts)");
    }
  }
  return {
    env,
    outputsFile,
    ssh: { host: host ?? "", user: flags.user ?? outputs.ssh_user ?? LAYOUT.users.deploy, port: flags.port, identity: flags.identity },
    sshSettings: { knownHostsFile: flags.knownHosts },
    bucket,
    region: outputs.region ?? env.backups.region,
    replicaPath: outputs.replica_path ?? `${env.names.bucketPrefix}/${LAYOUT.bucket.litestream}`,
    s3Endpoint: flags.s3Endpoint,
    credentials: keyId && secret ? { accessKeyId: keyId, secretAccessKey: new Secret(secret) } : undefined,
    overrides,
  };
}
