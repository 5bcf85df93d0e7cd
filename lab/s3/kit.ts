/**
 * The lab S3 as the kit's stacks make it: for each client environment, its bucket (versioned, with the
 * TLS-only bucket policy) and its backup user with the least-privilege policy — the very documents
 * stacks/backup-bucket.ts serializes into cdk.tf.json, from the same function.
 */
import { randomBytes } from "node:crypto";
import type { ResolvedEnvironment } from "../../app/config/types";
import { backupPolicies } from "../../stacks/backup-bucket";
import type { LabUser } from "./policy";
import { startLabS3, type LabS3 } from "./server";

/** The IAM user policy's name in the stack (IamUserPolicy "backups-of-this-environment-only"). */
const USER_POLICY_NAME = "backups-of-this-environment-only";

export interface KitLabS3 extends LabS3 {
  /** The backup user of each environment, by stack name (e.g. "example-prod"). */
  readonly users: ReadonlyMap<string, LabUser>;
}

/** A fresh key pair shaped like AWS's (AKIA… and 40 characters). */
function keyPair(): { accessKeyId: string; secretAccessKey: string } {
  const id = randomBytes(10).toString("hex").toUpperCase().slice(0, 16);
  return { accessKeyId: `AKIA${id}`, secretAccessKey: randomBytes(30).toString("base64").slice(0, 40) };
}

export async function startKitLabS3(envs: readonly ResolvedEnvironment[], options: { plainHttp?: boolean } = {}): Promise<KitLabS3> {
  const users = new Map<string, LabUser>();
  const buckets = envs.map((env) => {
    const { userPolicy, bucketPolicy } = backupPolicies({ bucketName: env.names.bucket, prefix: env.names.bucketPrefix });
    users.set(env.stackName, { userName: env.names.iamUser, ...keyPair(), policies: [{ name: USER_POLICY_NAME, document: userPolicy }] });
    return { name: env.names.bucket, region: env.backups.region, policy: bucketPolicy };
  });
  const lab = await startLabS3({ users: [...users.values()], buckets, plainHttp: options.plainHttp });
  return { ...lab, users };
}
