/**
 * The backup buckets for the boot tests: the strict lab S3 (lab/s3: HTTPS with a lab CA, SigV4, every
 * request decided by a real IAM evaluator against the stack's own policies), one bucket and one backup user
 * per client environment, as the stacks make them. Servers get their environment's key pair and nothing
 * more, so everything the kit does against S3 runs under exactly the least-privilege policy.
 *
 * It runs as a child process (lab/s3/process.ts): hashing and policy evaluation of hundreds of MiB must not
 * share the test's event loop, which times the writes it acknowledges. It listens on the address it is
 * given, with that address in its certificate, and exits with the test process.
 */
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { s3Request } from "../s3/client.ts";
import type { Decision } from "../s3/policy.ts";
import { startKitLabS3Process } from "../s3/process.ts";
import { all, text } from "../s3/xml.ts";
import { processIdentity, type Teardown } from "./teardown.ts";

export interface S3Options {
  /** Address to listen on: 127.0.0.1 for host-side use, the lab network's host address for containers. */
  readonly host?: string;
  /** The environments whose buckets and backup users the lab S3 holds; the first is the default. */
  readonly environments: readonly ResolvedEnvironment[];
}

/** Everything a client of one environment's backups needs: where, which bucket, which key, which CA. */
export interface S3Access {
  /** Path-style HTTPS endpoint, e.g. https://10.213.0.1:40123 (Litestream: force-path-style). */
  readonly endpoint: string;
  /** The lab CA's PEM (Go: SSL_CERT_FILE; machines have it in their trust store). */
  readonly caFile: string;
  readonly bucket: string;
  readonly region: string;
  /** The environment's backup user: allowed on its own prefix only. */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** One environment's bucket, seen with its backup user's key (so the policy applies to the test too). */
export interface BucketClient extends S3Access {
  readonly stackName: string;
  /** Keys under `prefix` (which must lie in the environment's prefix), sorted; follows continuation tokens. */
  listKeys(prefix: string): Promise<string[]>;
  /** An object's bytes; throws naming the key and S3's error when it cannot be read. */
  getObject(key: string): Promise<Buffer>;
  putObject(key: string, body: Buffer | string): Promise<void>;
}

/** The lab S3 of a test run; its own fields are the first environment's bucket and key. */
export interface HarnessS3 extends BucketClient {
  /** The bucket and backup user of one environment, by stack name; throws naming the known ones. */
  forStack(stackName: string): BucketClient;
  /** Every authorization decision so far (which statement of which policy allowed or denied what). */
  decisions(): Promise<readonly Decision[]>;
  /** IAM CreateAccessKey for the stack's backup user (two keys at most, as AWS): a rotation's new key. */
  createAccessKey(stackName: string): Promise<{ readonly accessKeyId: string; readonly secretAccessKey: string }>;
  /** IAM DeleteAccessKey: the key is refused (InvalidAccessKeyId) from then on; forStack's client keeps the old one. */
  deleteAccessKey(stackName: string, accessKeyId: string): Promise<void>;
  /** Stops the server early (e.g. to test "S3 unreachable"); teardown stops it otherwise. */
  stop(): Promise<void>;
}

export async function startS3(teardown: Teardown, options: S3Options): Promise<HarnessS3> {
  const host = options.host ?? "127.0.0.1";
  if (options.environments.length === 0) throw new Error("startS3: name at least one environment (its bucket and backup user)");
  const lab = await startKitLabS3Process(options.environments, { host });
  // Journaled too: a test process killed before its teardown leaves no server behind for the next run.
  const identity = processIdentity(lab.pid);
  if (identity) teardown.track({ kind: "process", ...identity });
  teardown.defer("lab S3", () => lab.stop());

  const clients = new Map(
    options.environments.map((env) => {
      const user = lab.users.get(env.stackName);
      if (!user) throw new Error(`the lab S3 made no backup user for ${env.stackName}`);
      const access: S3Access = {
        endpoint: lab.endpoint,
        caFile: lab.caFile,
        bucket: env.names.bucket,
        region: env.backups.region,
        accessKeyId: user.accessKeyId,
        secretAccessKey: user.secretAccessKey,
      };
      return [env.stackName, bucketClient(env.stackName, access)] as const;
    }),
  );
  const forStack = (stackName: string): BucketClient => {
    const client = clients.get(stackName);
    if (!client) throw new Error(`the lab S3 holds no bucket for ${stackName} (it has ${[...clients.keys()].join(", ")}): pass it to startS3's environments`);
    return client;
  };
  return {
    ...forStack(options.environments[0].stackName),
    forStack,
    decisions: () => lab.decisions(),
    createAccessKey: (stackName) => lab.createAccessKey(stackName),
    deleteAccessKey: (stackName, accessKeyId) => lab.deleteAccessKey(stackName, accessKeyId),
    stop: () => lab.stop(),
  };
}

function bucketClient(stackName: string, access: S3Access): BucketClient {
  const send = (method: string, key: string, query = "", body?: Buffer | string) =>
    s3Request(access.endpoint, access.caFile, access, method, `${objectPath(access.bucket, key)}${query}`, { body });
  const where = (key: string) => `s3://${access.bucket}/${key} (as ${stackName}'s backup user)`;
  return {
    ...access,
    stackName,
    listKeys: async (prefix) => {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const query = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
        const answer = await s3Request(access.endpoint, access.caFile, access, "GET", `/${access.bucket}?${query}`);
        if (answer.status !== 200) throw new Error(`S3 ListObjectsV2 ${where(prefix)} failed: HTTP ${answer.status} ${answer.text}`);
        for (const contents of all(answer.text, "Contents")) keys.push(text(contents, "Key")!);
        token = text(answer.text, "IsTruncated") === "true" ? text(answer.text, "NextContinuationToken") : undefined;
      } while (token);
      return keys.sort();
    },
    getObject: async (key) => {
      const answer = await send("GET", key);
      if (answer.status !== 200) throw new Error(`S3 GET ${where(key)} failed: HTTP ${answer.status} ${answer.text}`);
      return answer.body;
    },
    putObject: async (key, body) => {
      const answer = await send("PUT", key, "", body);
      if (answer.status !== 200) throw new Error(`S3 PUT ${where(key)} failed: HTTP ${answer.status} ${answer.text}`);
    },
  };
}

function objectPath(bucket: string, key: string): string {
  return `/${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}
