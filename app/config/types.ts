/**
 * The shape of a client file (`app/clients/<slug>.ts`). An environment's fields are declared once, with
 * their defaults, checks and docs, in ./fields.ts; the types here are derived from them (./schema.ts).
 * `app/clients/example.ts` mentions each of them with its default and doubles as the reference.
 *
 * A client file is a plain typed object: share settings between environments with ordinary spreads.
 */
import type { ENVIRONMENT } from "./fields.ts";
import type { Input, Resolved } from "./schema.ts";

/** Where a client environment's server runs. Each provider implements `stacks/server/server-platform.ts`. */
export type ProviderName = "digitalocean" | "hetzner";

export interface ClientConfig {
  /**
   * Client slug: lowercase letters, digits and hyphens, 2–20 characters, starting with a letter.
   * Part of every resource name (volume, bucket, IAM user) — changing it later replaces those resources.
   */
  readonly slug: string;
  /** One entry per environment; each becomes the stack `<slug>-<environment name>` (e.g. `acme-prod`). */
  readonly environments: Readonly<Record<string, EnvironmentConfig>>;
}

export interface SshKey {
  /** Who the key belongs to: the name the key is registered under in the DigitalOcean account or Hetzner project. */
  readonly name: string;
  /** The OpenSSH public key line, e.g. `ssh-ed25519 AAAA… jane@agency`. */
  readonly publicKey: string;
}

/** A client environment as a client file writes it: the fields declared in ./fields.ts. */
export interface EnvironmentConfig extends Input<typeof ENVIRONMENT> {}
export type AppConfig = EnvironmentConfig["app"];
export type DomainConfig = NonNullable<EnvironmentConfig["domain"]>;

/** Identity shared by everything generated for one client environment. */
export interface EnvironmentIdentity {
  /** Agency name prefix (`app/agency.ts`). */
  readonly prefix: string;
  readonly client: string;
  readonly environment: string;
  /** `<client>-<environment>`: the stack name. */
  readonly stackName: string;
}

/**
 * A client environment after validation, with every default filled in (the fields declared in ./fields.ts).
 * Stacks, cloud-init and the scripts read only this shape.
 */
export interface ResolvedEnvironment extends EnvironmentIdentity, Resolved<typeof ENVIRONMENT> {
  /** The client file this came from, for messages. */
  readonly sourceFile: string;
  /** Names derived from stable ids. They are a contract: renaming one replaces the resource. */
  readonly names: {
    /** Data volume name (DigitalOcean: also its device name). */
    readonly volume: string;
    /** Backup bucket, globally unique. */
    readonly bucket: string;
    /** Key prefix of this environment inside the bucket. */
    readonly bucketPrefix: string;
    readonly iamUser: string;
    readonly server: string;
  };
}

/** Agency-wide settings, in `app/agency.ts`. */
export interface AgencySettings {
  /**
   * Short agency prefix for globally unique names (buckets): lowercase letters and digits, 2–12 chars.
   * Changing it renames every bucket and volume, i.e. replaces them: pick it once.
   */
  readonly namePrefix: string;
  /** Where Terraform state lives. @default { type: "local" } */
  readonly stateBackend?: StateBackendConfig;
}

export type StateBackendConfig =
  | {
      /** State in `terraform.<stack>.tfstate` next to the repo (gitignored). It holds secrets. */
      readonly type: "local";
    }
  | {
      /** State in an S3 bucket you created beforehand, encrypted, with S3-native locking (lockfile). */
      readonly type: "s3";
      readonly bucket: string;
      readonly region: string;
      /** @default "<namePrefix>" — state keys are `<keyPrefix>/<stack>.tfstate` */
      readonly keyPrefix?: string;
    };
