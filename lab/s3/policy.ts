/**
 * Authorization as AWS does it, by a real IAM evaluator (@cloud-copilot/iam-simulate): the caller's
 * identity policies and the bucket policy, with the request's context (aws:SecureTransport, s3:prefix …).
 * Every decision is kept in a log, so a test can say which statement of which policy decided.
 */
import { anonymousPrincipal, runSimulation, type Simulation } from "@cloud-copilot/iam-simulate";

export interface PolicyDocument {
  readonly Version: string;
  readonly Statement: readonly Record<string, unknown>[];
}

/** An IAM user of the lab: its key pair and its inline policies (what the stack attaches to it). */
export interface LabUser {
  readonly userName: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly policies: readonly { readonly name: string; readonly document: PolicyDocument }[];
}

export interface DecidingStatement {
  /** The user policy's name, or `bucket policy of <bucket>`. */
  readonly policy: string;
  readonly sid?: string;
  readonly effect: string;
}

export interface Decision {
  readonly requestId: string;
  readonly principal: string; // user ARN, or "anonymous"
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string>>;
  readonly result: "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied";
  /** Deny statements that matched, or the allows that allowed; empty for an implicit deny (none allowed). */
  readonly decidedBy: readonly DecidingStatement[];
}

export const LAB_ACCOUNT_ID = "123456789012";

export const userArn = (user: LabUser) => `arn:aws:iam::${LAB_ACCOUNT_ID}:user/${user.userName}`;

export class Authorizer {
  readonly log: Decision[] = [];

  private readonly bucketPolicies: ReadonlyMap<string, PolicyDocument>;
  constructor(bucketPolicies: ReadonlyMap<string, PolicyDocument>) {
    this.bucketPolicies = bucketPolicies;
  }

  async authorize(r: {
    requestId: string;
    user: LabUser | undefined;
    action: string;
    bucket: string;
    key?: string;
    context: Record<string, string>;
  }): Promise<Decision> {
    const resource = r.key === undefined ? `arn:aws:s3:::${r.bucket}` : `arn:aws:s3:::${r.bucket}/${r.key}`;
    const bucketPolicy = this.bucketPolicies.get(r.bucket);
    const principal = r.user ? userArn(r.user) : "anonymous";
    const context: Record<string, string> = { ...r.context };
    if (r.user) {
      Object.assign(context, {
        "aws:username": r.user.userName,
        "aws:PrincipalArn": principal,
        "aws:PrincipalAccount": LAB_ACCOUNT_ID,
        "aws:PrincipalType": "User",
      });
    }
    const simulation: Simulation = {
      request: { action: r.action, principal: r.user ? principal : anonymousPrincipal, resource: { resource, accountId: LAB_ACCOUNT_ID }, contextVariables: context },
      identityPolicies: (r.user?.policies ?? []).map((p) => ({ name: p.name, policy: p.document })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: bucketPolicy,
      additionalSettings: { s3: { blockPublicAccess: true } },
    } as Simulation;
    const response = await runSimulation(simulation, {});
    // An input the evaluator refuses is a bug of the lab, never a silent allow.
    if (response.resultType !== "single") throw new Error(`IAM simulation of ${r.action} on ${resource} failed: ${JSON.stringify(response)}`);
    const analysis = response.result.analysis;
    const result = response.overallResult as Decision["result"];
    const bucketPolicyName = `bucket policy of ${r.bucket}`;
    const pick = (kind: "allowStatements" | "denyStatements") => [
      ...(analysis?.identityAnalysis?.[kind] ?? []).map((s) => ({ policy: String(s.policyId), sid: s.statement.sid(), effect: s.statement.effect() })),
      ...(analysis?.resourceAnalysis?.[kind] ?? []).map((s) => ({ policy: bucketPolicyName, sid: s.statement.sid(), effect: s.statement.effect() })),
    ];
    const decidedBy = result === "Allowed" ? pick("allowStatements") : result === "ExplicitlyDenied" ? pick("denyStatements") : [];
    const decision: Decision = { requestId: r.requestId, principal, action: r.action, resource, context, result, decidedBy };
    this.log.push(decision);
    return decision;
  }
}
