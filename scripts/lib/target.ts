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
  /** Every app server's address (`servers` > 1: one per droplet, `ipv4` is the first). */
  readonly server_ipv4s?: readonly string[];
  /** The load balancer in front of them (only when `servers` > 1). */
  readonly load_balancer_ip?: string;
  readonly ipv6?: string;
  readonly ssh_user?: string;
  readonly bucket?: string;
  readonly region?: string;
  readonly replica_path?: string;
  readonly replica_url?: string;
  readonly app_port?: number;
  readonly access_key_id?: string;
  readonly secret_access_key?: string;
  /** On PostgreSQL (sensitive): the app user's URI on the app database, TLS verify-full. */
  readonly database_url?: string;
  /** The same user on the drill's scratch database. */
  readonly database_drill_url?: string;
  /** PEM of the cluster's CA. */
  readonly database_ca_certificate?: string;
}

/** Flags every script takes (see `--help`). */
export interface TargetFlags {
  readonly outputs?: string;
  readonly host?: string;
  /** One of several servers: its number in server_ipv4s (1 = the first) or its address. */
  readonly server?: string;
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
  /**
   * Every app server of the environment, in rollout order (the outputs' server_ipv4s, else [ipv4]); `ssh.host`
   * is the first, or the one --server/--host chose. @default [ssh.host]
   */
  readonly servers?: readonly string[];
  /** Whether --server or --host chose one server (scripts then act on that one only). @default false */
  readonly chosen?: boolean;
  /** The load balancer's address, when the environment has one (servers > 1). */
  readonly loadBalancer?: string;
  /** The managed PostgreSQL cluster's connection, when the outputs hold it (what /etc/kit/database.env says). */
  readonly database?: { readonly url: Secret; readonly drillUrl?: Secret; readonly caCertificate: string };
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
  const servers = serverAddresses(outputs, outputsFile);
  if (flags.host !== undefined && flags.server !== undefined) throw new OpsError("--host and --server both name the server", "pass one of them");
  const host = flags.host ?? (flags.server !== undefined ? chooseServer(flags.server, servers, env.stackName, outputsFile) : servers[0]);
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
    servers: flags.host !== undefined ? [flags.host] : servers,
    chosen: flags.host !== undefined || flags.server !== undefined,
    loadBalancer: outputs.load_balancer_ip,
    database: outputs.database_url && outputs.database_ca_certificate
      ? { url: new Secret(outputs.database_url), drillUrl: outputs.database_drill_url ? new Secret(outputs.database_drill_url) : undefined, caCertificate: outputs.database_ca_certificate }
      : undefined,
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

/** The app servers' addresses from the outputs: server_ipv4s, else [ipv4], else none. */
export function serverAddresses(outputs: StackOutputs, outputsFile: string): string[] {
  const list = outputs.server_ipv4s;
  if (list === undefined) return outputs.ipv4 ? [outputs.ipv4] : [];
  if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === "string" && a !== "")) {
    throw errors.badOutputs(outputsFile, `server_ipv4s must be a list of addresses (got ${JSON.stringify(list)})`);
  }
  if (outputs.ipv4 && list[0] !== outputs.ipv4) throw errors.badOutputs(outputsFile, `ipv4 ${outputs.ipv4} is not the first of server_ipv4s ${list.join(", ")}`);
  return [...list];
}

/** `--server N` (1 = the first of server_ipv4s) or `--server ADDR` (one of them): the address. */
export function chooseServer(value: string, servers: readonly string[], stack: string, outputsFile: string): string {
  if (servers.length === 0) throw errors.noHost(stack, outputsFile);
  const list = servers.map((a, i) => `${i + 1} = ${a}`).join(", ");
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n >= 1 && n <= servers.length) return servers[n - 1];
    throw new OpsError(`--server ${value}: ${stack} has ${servers.length} server${servers.length === 1 ? "" : "s"} (${list})`, `pass a number from 1 to ${servers.length}, or one of the addresses`);
  }
  if (servers.includes(value)) return value;
  throw new OpsError(`--server ${value} is not one of ${stack}'s servers (${list}, from ${outputsFile})`, "pass its number or one of these addresses; --host ADDR reaches any other address");
}

/** One Target per server, in rollout order (each with its own ssh.host). */
export function serverTargets(target: Target): Target[] {
  return (target.servers ?? [target.ssh.host]).map((host) => ({ ...target, ssh: { ...target.ssh, host }, servers: target.servers, chosen: true }));
}

/** Which server this is, 1-based, by its place in server_ipv4s (1 when --host named an address outside it). */
export function serverNumber(target: Target): number {
  return Math.max(1, (target.servers ?? [target.ssh.host]).indexOf(target.ssh.host) + 1);
}

/** The stack's name, and which server when it has several: "example-prod", "example-prod #2". */
export function serverLabel(target: Target): string {
  const servers = target.servers ?? [target.ssh.host];
  return servers.length > 1 ? `${target.env.stackName} #${serverNumber(target)}` : target.env.stackName;
}
