/**
 * The shape of a client file (`app/clients/<slug>.ts`). Every field is documented with its default;
 * `app/clients/example.ts` uses each of them and doubles as the reference.
 *
 * A client file is a plain typed object: share settings between environments with ordinary spreads.
 */

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

export interface DomainConfig {
  /** The site's host name, e.g. `app.acme.example`. Caddy obtains a certificate for it (automatic HTTPS). */
  readonly name: string;
  /**
   * The DigitalOcean DNS zone that holds `name`, when the domain's DNS is hosted on DigitalOcean.
   * @default - no DNS records are created; point an A/AAAA record at the stack's `ipv4`/`ipv6` outputs yourself.
   */
  readonly digitalOceanZone?: string;
}

export interface AppConfig {
  /**
   * Git URL of the app (`https://…`, `ssh://…` or `git@host:path`). No credentials in it (they would be stored
   * in plaintext): for a private repo use the ssh form with `privateRepo: true`. No single quote (`%27`).
   */
  readonly repo: string;
  /** Branch, tag or commit to deploy at first boot. @default "main" */
  readonly ref?: string;
  /**
   * Port the app listens on (loopback only; Caddy proxies to it). The deploy script also uses `port + 1`
   * to start a new release beside the old one. @default 8000
   */
  readonly port?: number;
  /** Path that answers 200 when the app is healthy. @default "/healthz" */
  readonly healthPath?: string;
  /** `deno task` names. @default { migrate: "migrate", start: "start" } */
  readonly tasks?: { readonly migrate?: string; readonly start?: string };
  /** Non-secret environment for the app (`/etc/app/app.env`). Values are one line, without a single quote. @default {} */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Names of secret environment variables. Their values never live in the repo or the synthesized
   * Terraform: each becomes a sensitive Terraform variable `secret_<NAME>` (set `TF_VAR_secret_<NAME>`
   * when deploying) and lands in `/etc/app/secrets.env` (0600). @default []
   */
  readonly secrets?: readonly string[];
  /**
   * The repo is private: the stack takes an SSH deploy key (sensitive variable `git_deploy_key`, set
   * `TF_VAR_git_deploy_key`) that the server uses to clone. @default false
   */
  readonly privateRepo?: boolean;
}

export interface LitestreamConfig {
  /**
   * How often WAL changes are shipped to S3. A crash loses at most the writes of the last syncInterval
   * + 100 ms (Litestream's WAL check, `LITESTREAM_MONITOR_INTERVAL_MS`) and the upload in flight. @default "1s"
   */
  readonly syncInterval?: string;
  /** How often a full snapshot is taken; bounds how much WAL a restore replays. @default "1h" */
  readonly snapshotInterval?: string;
  /** How far back point-in-time restores reach. Must be ≥ snapshotInterval. @default "72h" */
  readonly retention?: string;
}

export interface FallbackBackupConfig {
  /**
   * systemd OnCalendar expression for the daily fallback copy (server time is UTC): a shorthand (`daily`, …) or
   * `[weekday] YYYY-MM-DD HH:MM[:SS] [UTC]` with `*`, lists, ranges (`..`) and repetitions (`/`). @default "*-*-* 03:30:00"
   */
  readonly onCalendar?: string;
  /** Days of fallback copies kept on the volume and in the bucket. @default 7 */
  readonly keepDays?: number;
}

export interface BackupConfig {
  /** AWS region of the backup bucket. @default "eu-central-1" */
  readonly region?: string;
  /** Days a replaced or deleted backup object is kept (bucket versioning). @default 30 */
  readonly noncurrentVersionDays?: number;
  /** Continuous replication. */
  readonly litestream?: LitestreamConfig;
  /** Daily `sqlite3 .backup` copy, independent of Litestream. */
  readonly fallback?: FallbackBackupConfig;
}

export interface DrillConfig {
  /** systemd OnCalendar expression for the on-server restore drill (same forms as the fallback's). @default "monthly" */
  readonly onCalendar?: string;
  /**
   * https URL pinged (HTTP GET) after a passing drill: a dead-man switch such as healthchecks.io. No single quote (`%27`).
   * @default - no ping
   */
  readonly pingUrl?: string;
}

export interface EnvironmentConfig {
  /** Cloud provider of the server. */
  readonly provider: ProviderName;
  /** Provider region, e.g. `fra1` (DigitalOcean). */
  readonly region: string;
  /** Server size slug. @default "s-1vcpu-1gb" on DigitalOcean */
  readonly size?: string;
  /** OS image. The bootstrap is proven (booted in the tests) on Debian 12 only. @default "debian-12-x64" on DigitalOcean */
  readonly image?: string;
  /** Keys allowed to log in as the `deploy` user. At least one. */
  readonly sshKeys: readonly SshKey[];
  /**
   * CIDRs allowed to reach SSH (port 22). At least one; the whole internet is refused, and so is any range wider
   * than /8 (IPv4) or /16 (IPv6).
   */
  readonly sshAllowedCidrs: readonly string[];
  /** @default - no domain: Caddy serves plain HTTP on the server's address */
  readonly domain?: DomainConfig;
  readonly app: AppConfig;
  /** The persistent data volume. */
  readonly volume?: {
    /** Size in GiB. Can grow later, never shrink. @default 10 */
    readonly sizeGiB?: number;
  };
  readonly backups?: BackupConfig;
  readonly drill?: DrillConfig;
}

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
 * A client environment after validation, with every default filled in. Stacks, cloud-init and the scripts
 * read only this shape.
 */
export interface ResolvedEnvironment extends EnvironmentIdentity {
  /** The client file this came from, for messages. */
  readonly sourceFile: string;
  readonly provider: ProviderName;
  readonly region: string;
  readonly size: string;
  readonly image: string;
  readonly sshKeys: readonly SshKey[];
  readonly sshAllowedCidrs: readonly string[];
  readonly domain?: DomainConfig;
  readonly app: {
    readonly repo: string;
    readonly ref: string;
    readonly port: number;
    readonly healthPath: string;
    readonly tasks: { readonly migrate: string; readonly start: string };
    readonly env: Readonly<Record<string, string>>;
    readonly secrets: readonly string[];
    readonly privateRepo: boolean;
  };
  readonly volume: { readonly sizeGiB: number };
  readonly backups: {
    readonly region: string;
    readonly noncurrentVersionDays: number;
    readonly litestream: Required<LitestreamConfig>;
    readonly fallback: Required<FallbackBackupConfig>;
  };
  readonly drill: { readonly onCalendar: string; readonly pingUrl?: string };
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
