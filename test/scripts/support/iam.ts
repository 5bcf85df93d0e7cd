/**
 * Reading the lab S3's decision log (lab/s3/policy.ts) for the IAM proofs: which requests an environment's
 * key made, and whether each was allowed by the statement of the stack's policy meant for it.
 */
import type { ResolvedEnvironment } from "../../../app/config/types.ts";
import { LAB_ACCOUNT_ID, type Decision } from "../../../lab/s3/policy.ts";

/** The user policy's name in the stack (IamUserPolicy), as the decision log names it. */
export const USER_POLICY = "backups-of-this-environment-only";

/** The statement of the backup user's policy that must allow each action the kit uses (stacks/backup-bucket.ts). */
const ALLOWED_BY: Readonly<Record<string, string>> = {
  "s3:GetBucketLocation": "FindTheBucket",
  "s3:ListBucket": "ListThisEnvironmentOnly",
  "s3:GetObject": "ReadWriteThisEnvironmentOnly",
  "s3:PutObject": "ReadWriteThisEnvironmentOnly",
  "s3:DeleteObject": "ReadWriteThisEnvironmentOnly",
};

export const principalOf = (env: ResolvedEnvironment) => `arn:aws:iam::${LAB_ACCOUNT_ID}:user/${env.names.iamUser}`;

/** The decisions on requests signed with `env`'s backup user's keys. */
export function requestsOf(decisions: readonly Decision[], env: ResolvedEnvironment): Decision[] {
  return decisions.filter((d) => d.principal === principalOf(env));
}

/**
 * What is wrong with the requests made by `env`'s key, one line each (a test expects none): each must be
 * allowed, over TLS, inside the environment's bucket and prefix, by the statement meant for its action.
 */
export function leastPrivilegeProblems(decisions: readonly Decision[], env: ResolvedEnvironment): string[] {
  const bucketArn = `arn:aws:s3:::${env.names.bucket}`;
  return requestsOf(decisions, env).map((d) => {
    const where = d.resource === bucketArn || d.resource.startsWith(`${bucketArn}/${env.names.bucketPrefix}/`);
    const by = d.decidedBy.map((s) => `${s.policy}/${s.sid}`).join(",");
    const expected = `${USER_POLICY}/${ALLOWED_BY[d.action] ?? "(no statement: the kit does not use this action)"}`;
    const wrong = [
      d.result !== "Allowed" && `${d.result}`,
      d.context["aws:SecureTransport"] !== "true" && "not over TLS",
      !where && "outside the environment's prefix",
      by !== expected && `decided by ${by || "nothing"}, expected ${expected}`,
    ].filter(Boolean);
    return wrong.length ? `${d.action} ${d.resource} (${d.requestId}): ${wrong.join("; ")}` : "";
  }).filter(Boolean);
}

/** The distinct actions `env`'s key used. */
export const actionsOf = (decisions: readonly Decision[], env: ResolvedEnvironment) => new Set(requestsOf(decisions, env).map((d) => d.action));
