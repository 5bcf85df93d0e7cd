import { IamAccessKey } from "@cdktf/provider-aws/lib/iam-access-key/index.js";
import { IamUser } from "@cdktf/provider-aws/lib/iam-user/index.js";
import { IamUserPolicy } from "@cdktf/provider-aws/lib/iam-user-policy/index.js";
import { S3Bucket } from "@cdktf/provider-aws/lib/s3-bucket/index.js";
import { S3BucketLifecycleConfiguration } from "@cdktf/provider-aws/lib/s3-bucket-lifecycle-configuration/index.js";
import { S3BucketOwnershipControls } from "@cdktf/provider-aws/lib/s3-bucket-ownership-controls/index.js";
import { S3BucketPolicy } from "@cdktf/provider-aws/lib/s3-bucket-policy/index.js";
import { S3BucketPublicAccessBlock } from "@cdktf/provider-aws/lib/s3-bucket-public-access-block/index.js";
import { S3BucketServerSideEncryptionConfigurationA } from "@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration/index.js";
import { S3BucketVersioningA } from "@cdktf/provider-aws/lib/s3-bucket-versioning/index.js";
import { S3Object } from "@cdktf/provider-aws/lib/s3-object/index.js";
import { Construct } from "constructs";
import type { AccessKeySlot } from "../app/config/fields.ts";
import type { FirstBootObject } from "../cloud-init/bundle.ts";
import { LAYOUT } from "../cloud-init/layout.ts";

export interface BackupBucketProps {
  /** Globally unique bucket name. Part of the contract: renaming replaces the bucket (backups lost). */
  readonly bucketName: string;
  /** Key prefix of the environment inside the bucket (`<env>`); the IAM user is confined to it. */
  readonly prefix: string;
  /** Name of the IAM user whose keys the server uses. */
  readonly iamUserName: string;
  /** Days a replaced or deleted object version is kept. */
  readonly noncurrentVersionDays: number;
  /** Days fallback copies are kept in the bucket (current versions under `<prefix>/fallback/`), and the pg_dumps (`<prefix>/pg-dump/`). */
  readonly fallbackKeepDays: number;
  /**
   * The backup user's access keys by slot, oldest first (`backups.accessKeys`); servers use the last one.
   * Two slots exist only while a key is rotated (scripts/rotate-keys.ts).
   */
  readonly accessKeySlots: readonly AccessKeySlot[];
  readonly tags: Readonly<Record<string, string>>;
}

/** The only S3 actions the backup user gets (Litestream's documented minimum; README: "Security defaults"). */
export const BUCKET_ACTIONS = ["s3:GetBucketLocation", "s3:ListBucket"] as const;
export const OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] as const;

export interface PolicyDocument {
  readonly Version: "2012-10-17";
  readonly Statement: readonly Record<string, unknown>[];
}

/**
 * The backup user's inline policy and the bucket policy, for a concrete bucket name. One source of truth:
 * the stack serializes these, and the lab's S3 (lab/s3) evaluates exactly these on every request.
 */
export function backupPolicies(props: Pick<BackupBucketProps, "bucketName" | "prefix">): {
  readonly userPolicy: PolicyDocument;
  readonly bucketPolicy: PolicyDocument;
} {
  const bucketArn = `arn:aws:s3:::${props.bucketName}`;
  const { prefix } = props;
  return {
    userPolicy: {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "FindTheBucket",
          Effect: "Allow",
          Action: ["s3:GetBucketLocation"],
          Resource: bucketArn,
        },
        {
          Sid: "ListThisEnvironmentOnly",
          Effect: "Allow",
          Action: ["s3:ListBucket"],
          Resource: bucketArn,
          Condition: { StringLike: { "s3:prefix": [prefix, `${prefix}/*`] } },
        },
        {
          Sid: "ReadWriteThisEnvironmentOnly",
          Effect: "Allow",
          Action: [...OBJECT_ACTIONS],
          Resource: `${bucketArn}/${prefix}/*`,
        },
      ],
    },
    bucketPolicy: {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "DenyInsecureTransport",
          Effect: "Deny",
          Principal: "*",
          Action: "s3:*",
          Resource: [bucketArn, `${bucketArn}/*`],
          Condition: { Bool: { "aws:SecureTransport": "false" } },
        },
      ],
    },
  };
}

/**
 * Construct id of each access-key slot: a contract. Slot a keeps the id the single key always had, so an
 * existing stack's key stays where it is; renaming one deletes that key and makes a new one (the server's
 * key stops working until a deploy pushes the new one).
 */
export const ACCESS_KEY_IDS: Readonly<Record<AccessKeySlot, string>> = { a: "BackupUserKey", b: "BackupUserKeyB" };

/**
 * A private, versioned, encrypted, TLS-only S3 bucket for one client environment's backups, and an IAM
 * user whose keys can touch only this environment's prefix in it.
 *
 * Construct ids here are part of the public contract: renaming `Bucket` replaces the bucket.
 */
export class BackupBucket extends Construct {
  readonly bucket: S3Bucket;
  readonly bucketArn: string;
  /** Every key of the backup user, by slot, oldest first. */
  readonly accessKeys: ReadonlyMap<AccessKeySlot, IamAccessKey>;
  /** The key servers use: the last slot listed. */
  readonly accessKey: IamAccessKey;

  private readonly props: BackupBucketProps;

  constructor(scope: Construct, id: string, props: BackupBucketProps) {
    super(scope, id);
    this.props = props;
    this.bucketArn = `arn:aws:s3:::${props.bucketName}`;
    this.bucket = this.createBucket();
    this.hardenBucket();
    this.accessKeys = this.createBackupUser();
    this.accessKey = this.accessKeys.get(props.accessKeySlots[props.accessKeySlots.length - 1])!;
  }

  /**
   * The first-boot bundle, under the environment's own prefix (the backup key may read it; no lifecycle rule
   * expires a current version there). No prevent_destroy: it is rebuilt from the repo, and a changed bundle
   * is a new key, so Terraform replaces the object while a running server never reads it again.
   */
  uploadFirstBoot(bundle: FirstBootObject): S3Object {
    // Servers 2, 3, … (`servers` > 1) bring their own bundle (their volume's device is in it); one that is the same
    // as one already uploaded (the same key: content-addressed) is that object, never a second resource on one key.
    const uploaded = this.firstBootBundles.get(bundle.key);
    if (uploaded) return uploaded;
    const n = this.firstBootBundles.size + 1;
    const object = new S3Object(this, n === 1 ? "FirstBootBundle" : `FirstBootBundle${n}`, {
      bucket: this.bucket.id,
      key: bundle.key,
      contentBase64: bundle.gzip.toString("base64"),
      contentType: "application/gzip",
      tags: { ...this.props.tags, Purpose: "first-boot" },
    });
    this.firstBootBundles.set(bundle.key, object);
    return object;
  }

  private readonly firstBootBundles = new Map<string, S3Object>();

  private createBucket(): S3Bucket {
    return new S3Bucket(this, "Bucket", {
      bucket: this.props.bucketName,
      // Never let Terraform empty the bucket to delete it.
      forceDestroy: false,
      tags: { ...this.props.tags, Purpose: "backups" },
      lifecycle: { preventDestroy: true },
    });
  }

  private hardenBucket(): void {
    const bucket = this.bucket.id;
    new S3BucketPublicAccessBlock(this, "PublicAccessBlock", {
      bucket,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    new S3BucketOwnershipControls(this, "OwnershipControls", {
      bucket,
      rule: { objectOwnership: "BucketOwnerEnforced" },
    });
    new S3BucketVersioningA(this, "Versioning", {
      bucket,
      versioningConfiguration: { status: "Enabled" },
    });
    new S3BucketServerSideEncryptionConfigurationA(this, "Encryption", {
      bucket,
      rule: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }],
    });
    new S3BucketLifecycleConfiguration(this, "Lifecycle", {
      bucket,
      rule: [
        {
          id: "expire-noncurrent-versions",
          status: "Enabled",
          filter: [{ prefix: "" }],
          noncurrentVersionExpiration: [{ noncurrentDays: this.props.noncurrentVersionDays }],
          abortIncompleteMultipartUpload: [{ daysAfterInitiation: 7 }],
          expiration: [{ expiredObjectDeleteMarker: true }],
        },
        {
          id: "expire-old-fallback-copies",
          status: "Enabled",
          filter: [{ prefix: `${this.props.prefix}/${LAYOUT.bucket.fallback}/` }],
          expiration: [{ days: this.props.fallbackKeepDays }],
        },
        {
          // On PostgreSQL the daily pg_dump (and its manifest) takes the fallback copy's place, kept as long. On every
          // environment: an environment moved back to SQLite still has its dumps expire.
          id: "expire-old-pg-dumps",
          status: "Enabled",
          filter: [{ prefix: `${this.props.prefix}/${LAYOUT.bucket.pgDump}/` }],
          expiration: [{ days: this.props.fallbackKeepDays }],
        },
      ],
    });
    new S3BucketPolicy(this, "TlsOnlyPolicy", {
      bucket,
      policy: JSON.stringify(backupPolicies(this.props).bucketPolicy),
    });
  }

  private createBackupUser(): Map<AccessKeySlot, IamAccessKey> {
    const user = new IamUser(this, "BackupUser", {
      name: this.props.iamUserName,
      tags: { ...this.props.tags, Purpose: "backups" },
    });
    new IamUserPolicy(this, "BackupUserPolicy", {
      name: "backups-of-this-environment-only",
      user: user.name,
      policy: JSON.stringify(backupPolicies(this.props).userPolicy),
    });
    return new Map(this.props.accessKeySlots.map((slot) => [slot, new IamAccessKey(this, ACCESS_KEY_IDS[slot], { user: user.name })]));
  }
}
