/**
 * The lab S3 as the kit's stacks make it: for each client environment, its bucket (versioned, with the
 * TLS-only bucket policy) and its backup user with the least-privilege policy — the very documents
 * stacks/backup-bucket.ts serializes into cdk.tf.json, from the same function.
 */
import { randomBytes } from "node:crypto";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { backupPolicies } from "../../stacks/backup-bucket.ts";
import type { LabUser } from "./policy.ts";
import { startLabS3, type LabS3, type LabS3Options } from "./server.ts";

/** The IAM user policy's name in the stack (IamUserPolicy "backups-of-this-environment-only"). */
const USER_POLICY_NAME = "backups-of-this-environment-only";

export interface KitLabS3 extends LabS3 {
  /** The backup user of each environment, by stack name (e.g. "example-prod"), with its first key. */
  readonly users: ReadonlyMap<string, LabUser>;
  /**
   * IAM's CreateAccessKey for a stack's backup user (what `cdktf deploy` does for a new slot of
   * backups.accessKeys): a new key pair with the user's policies. Refused beyond two keys, as AWS does.
   */
  createAccessKey(stackName: string): LabUser;
  /** IAM's DeleteAccessKey (a slot dropped from backups.accessKeys): the key is refused from then on. */
  deleteAccessKey(stackName: string, accessKeyId: string): void;
  /** The stack's backup user's keys now, oldest first. */
  accessKeys(stackName: string): readonly LabUser[];
}

/** A fresh key pair shaped like AWS's (AKIA… and 40 characters). */
function keyPair(): { accessKeyId: string; secretAccessKey: string } {
  const id = randomBytes(10).toString("hex").toUpperCase().slice(0, 16);
  return { accessKeyId: `AKIA${id}`, secretAccessKey: randomBytes(30).toString("base64").slice(0, 40) };
}

export async function startKitLabS3(envs: readonly ResolvedEnvironment[], options: Pick<LabS3Options, "plainHttp" | "host" | "certIps" | "certNames" | "downloadBytesPerSecond"> = {}): Promise<KitLabS3> {
  const users = new Map<string, LabUser>();
  const buckets = envs.map((env) => {
    const { userPolicy, bucketPolicy } = backupPolicies({ bucketName: env.names.bucket, prefix: env.names.bucketPrefix });
    users.set(env.stackName, { userName: env.names.iamUser, ...keyPair(), policies: [{ name: USER_POLICY_NAME, document: userPolicy }] });
    return { name: env.names.bucket, region: env.backups.region, policy: bucketPolicy };
  });
  const lab = await startLabS3({ ...options, users: [...users.values()], buckets });
  const keys = new Map([...users].map(([stack, user]) => [stack, [user]]));
  const keysOf = (stackName: string) => {
    const list = keys.get(stackName);
    if (!list) throw new Error(`the lab S3 has no backup user for ${stackName}`);
    return list;
  };
  return {
    ...lab,
    users,
    createAccessKey(stackName) {
      const list = keysOf(stackName);
      if (list.length >= 2) throw new Error(`LimitExceeded: Cannot exceed quota for AccessKeysPerUser: 2 (${list[0].userName})`);
      const key = { ...list[0], ...keyPair() };
      list.push(key);
      lab.serveAccessKey(key);
      return key;
    },
    deleteAccessKey(stackName, accessKeyId) {
      const list = keysOf(stackName);
      const at = list.findIndex((k) => k.accessKeyId === accessKeyId);
      if (at < 0) throw new Error(`NoSuchEntity: The Access Key with id ${accessKeyId} cannot be found (${list[0].userName})`);
      list.splice(at, 1);
      lab.refuseAccessKey(accessKeyId);
    },
    accessKeys: (stackName) => [...keysOf(stackName)],
  };
}
