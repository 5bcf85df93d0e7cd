import { AwsProvider } from "@cdktf/provider-aws/lib/provider/index.js";
import { Fn, LocalBackend, S3Backend, TerraformOutput, TerraformStack, TerraformVariable } from "cdktf";
import type { Construct } from "constructs";
import { ALERT_URL_VARIABLES } from "../app/config/fields.ts";
import type { AgencySettings, ProviderName, ResolvedEnvironment } from "../app/config/types.ts";
import { localStateFile } from "../app/repo.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { renderFirstBoot, type RenderOverrides } from "../cloud-init/render.ts";
import { BackupBucket } from "./backup-bucket.ts";
import { digitalOcean } from "./server/digitalocean.ts";
import { hetzner } from "./server/hetzner.ts";
import type { ProvisionedServer, ServerPlatform } from "./server/server-platform.ts";

/** From the directory where cdktf runs Terraform (cdktf.out/stacks/<stack>/) back to the repository's root. */
export const LOCAL_STATE_FROM_STACK_DIR = "../../..";

/**
 * Terraform reads every string as a template: a literal `${` or `%{` in the user data (shell, systemd)
 * would be taken for an interpolation and fail the plan. Escape them, leaving cdktf's own references
 * (`${TfToken[…]}`, resolved at synth) alone.
 */
export function escapeTemplateSyntax(text: string): string {
  return text.replace(/\$\{(?!TfToken\[)/g, () => "$${").replace(/%\{/g, () => "%%{");
}

/** The server part of each provider. */
export const PLATFORMS: Readonly<Partial<Record<ProviderName, ServerPlatform>>> = {
  digitalocean: digitalOcean,
  hetzner,
};

export interface ClientStackProps {
  readonly env: ResolvedEnvironment;
  readonly agency: AgencySettings;
  /** Test-only knobs passed to the user data renderer. */
  readonly renderOverrides?: RenderOverrides;
}

/**
 * One client environment (`<client>-<env>`): a server with its data volume on the client's provider, and
 * the environment's backup bucket and IAM user on AWS.
 */
export class ClientStack extends TerraformStack {
  constructor(scope: Construct, props: ClientStackProps) {
    const { env, agency } = props;
    super(scope, env.stackName);
    this.configureState(agency, env);
    const tags = { managedBy: "kit", agency: agency.namePrefix, client: env.client, environment: env.environment };

    new AwsProvider(this, "Aws", { region: env.backups.region, defaultTags: [{ tags }] });
    const backups = new BackupBucket(this, "Backups", {
      bucketName: env.names.bucket,
      prefix: env.names.bucketPrefix,
      iamUserName: env.names.iamUser,
      noncurrentVersionDays: env.backups.noncurrentVersionDays,
      fallbackKeepDays: env.backups.fallback.keepDays,
      accessKeySlots: env.backups.accessKeys,
      tags,
    });

    const secrets = this.secretVariables(env);
    const platform = PLATFORMS[env.provider];
    if (!platform) throw new Error(`no server platform for provider ${env.provider}`);
    const server = platform.create(this, {
      env,
      tags,
      firstBoot: (volumeDevice, serverIndex) => {
        const { userData, bundle } = renderFirstBoot(
          env,
          {
            volumeDevice,
            bucket: env.names.bucket,
            region: env.backups.region,
            s3Credentials: { accessKeyId: backups.accessKey.id, secretAccessKey: backups.accessKey.secret },
            appSecrets: secrets.app,
            gitDeployKey: secrets.gitDeployKey,
            alertUrls: secrets.alertUrls,
            // Servers 2, 3, … never hold SQLite data: their first boot waits for /etc/kit/database.env (restore-on-boot.sh).
            serverIndex,
          },
          { base64: (content) => Fn.base64encode(content), overrides: props.renderOverrides },
        );
        // The server downloads it at first boot, so it exists first (depends_on).
        return { userData: escapeTemplateSyntax(userData), dependsOn: [backups.uploadFirstBoot(bundle)] };
      },
    });

    this.outputs(env, server.ipv4, server.ipv6, backups);
    this.serverOutputs(server);
  }

  /** Every server's address, the load balancer's, and the managed database's connection (sensitive) and CA. */
  private serverOutputs(server: ProvisionedServer): void {
    new TerraformOutput(this, "server_ipv4s", {
      value: [...server.ipv4s],
      description: "Stable public IPv4 of every app server, the first first (ipv4 is the first); deploys go server by server in this order.",
    });
    if (server.loadBalancerIp) {
      new TerraformOutput(this, "load_balancer_ip", { value: server.loadBalancerIp, description: "IPv4 of the load balancer in front of the servers (the domain's A record)." });
    }
    const database = server.database;
    if (!database) return;
    const output = (id: string, value: string, description: string, sensitive: boolean) => new TerraformOutput(this, id, { value, description, sensitive });
    output("database_url", database.url, "The app's PostgreSQL URI (private host, TLS verified against database_ca_certificate): DATABASE_URL in /etc/kit/database.env.", true);
    output("database_drill_url", database.drillUrl, "The app user's URI on the scratch database the drill restores the daily pg_dump into.", true);
    output("database_admin_url", database.adminUrl, "The cluster admin's URI on the app database: only for the one-time grant on schema public (scripts/migrate-to-postgres.ts).", true);
    output("database_ca_certificate", database.caCertificate, "PEM of the cluster's CA (/etc/kit/postgres-ca.crt, PGSSLROOTCERT).", false);
  }

  private configureState(agency: AgencySettings, env: ResolvedEnvironment): void {
    const backend = agency.stateBackend ?? { type: "local" };
    if (backend.type === "s3") {
      const s3 = new S3Backend(this, {
        bucket: backend.bucket,
        region: backend.region,
        key: `${backend.keyPrefix ?? agency.namePrefix}/${env.stackName}.tfstate`,
        encrypt: true,
      });
      // S3-native state locking (Terraform ≥ 1.10); cdktf 0.21 predates the typed option.
      s3.addOverride("use_lockfile", true);
    } else {
      // At the repository's root, gitignored (state holds the backup user's secret key). Terraform resolves the
      // path from where cdktf runs it, cdktf.out/stacks/<stack>/; that directory is not a place for state:
      // `cdktf synth` deletes it when the stack is renamed or removed, and the data would be unmanaged.
      new LocalBackend(this, { path: `${LOCAL_STATE_FROM_STACK_DIR}/${localStateFile(env.stackName)}` });
    }
  }

  /** Secrets are sensitive variables: their values never appear in the synthesized Terraform. */
  private secretVariables(env: ResolvedEnvironment): { app: Record<string, string>; gitDeployKey?: string; alertUrls: { deadMan?: string; webhook?: string } } {
    const oneLineNoQuote = {
      condition: "${!can(regex(\"['\\\\r\\\\n]\", var.%NAME%))}",
      errorMessage: "Secret values must be one line without single quotes (they land in a systemd EnvironmentFile).",
    };
    const app: Record<string, string> = {};
    for (const name of env.app.secrets) {
      const variable = new TerraformVariable(this, `secret_${name}`, {
        type: "string",
        sensitive: true,
        nullable: false,
        description: `Value of the app secret ${name} (set TF_VAR_secret_${name}).`,
        validation: [{ ...oneLineNoQuote, condition: oneLineNoQuote.condition.replace("%NAME%", `secret_${name}`) }],
      });
      app[name] = variable.stringValue;
    }
    const alertUrls = this.alertUrlVariables(env);
    if (!env.app.privateRepo) return { app, alertUrls };
    const key = new TerraformVariable(this, "git_deploy_key", {
      type: "string",
      sensitive: true,
      nullable: false,
      description: "SSH private key (read-only deploy key) for cloning the app's private repo (set TF_VAR_git_deploy_key).",
    });
    return { app, gitDeployKey: key.stringValue, alertUrls };
  }

  /** The watcher's alert URLs that `alerts` says are configured (ALERT_URL_VARIABLES), as sensitive variables. */
  private alertUrlVariables(env: ResolvedEnvironment): { deadMan?: string; webhook?: string } {
    const urls: { deadMan?: string; webhook?: string } = {};
    for (const flag of ["deadMan", "webhook"] as const) {
      if (!env.alerts[flag]) continue;
      const name = ALERT_URL_VARIABLES[flag];
      urls[flag] = new TerraformVariable(this, name, {
        type: "string",
        sensitive: true,
        nullable: false,
        description: `URL of the watcher's ${flag === "deadMan" ? "dead-man switch" : "webhook"} (alerts.${flag}; set TF_VAR_${name}).`,
        // It lands in a systemd EnvironmentFile and in curl's config: one line, no quotes, no backslashes.
        validation: [
          {
            // An HCL string inside the expression: \\s is RE2's \s, \" a quote, \\\\ one backslash.
            condition: "$" + String.raw`{can(regex("^https://[^\\s\"'\\\\]+$", var.${name}))}`,
            errorMessage: `${name} must be an https:// URL on one line without spaces, quotes or backslashes (percent-encode them).`,
          },
        ],
      }).stringValue;
    }
    return urls;
  }

  private outputs(env: ResolvedEnvironment, ipv4: string, ipv6: string, backups: BackupBucket): void {
    const output = (id: string, value: string | number, description: string, sensitive = false) =>
      new TerraformOutput(this, id, { value, description, sensitive });
    output("ipv4", ipv4, "Stable public IPv4 of the server (survives a rebuild).");
    output("ipv6", ipv6, "Public IPv6 of the server.");
    output("ssh_user", LAYOUT.users.deploy, "User to SSH in as (keys only).");
    output("bucket", env.names.bucket, "Backup bucket.");
    output("region", env.backups.region, "Region of the backup bucket.");
    output("replica_path", `${env.names.bucketPrefix}/${LAYOUT.bucket.litestream}`, "Key prefix of the Litestream replica in the bucket.");
    output("replica_url", `s3://${env.names.bucket}/${env.names.bucketPrefix}/${LAYOUT.bucket.litestream}`, "Litestream replica URL.");
    output("app_port", env.app.port, "Loopback port of the app's first slot.");
    output("access_key_id", backups.accessKey.id, "Access key id of the backup IAM user that servers use (the last slot of backups.accessKeys).");
    output("secret_access_key", backups.accessKey.secret, "Secret key of the backup IAM user that servers use.", true);
    // A list keeps the slots' order (oldest first), which Terraform's maps would sort away.
    new TerraformOutput(this, "access_keys", {
      value: [...backups.accessKeys].map(([slot, key]) => ({ slot, id: key.id, created: key.createDate })),
      description: "Every access key of the backup IAM user, oldest first: slot, id, creation time (scripts/rotate-keys.ts).",
    });
    output("volume_size_gib", env.volume.sizeGiB, "Size of the data volume as deployed (volumes never shrink: synth refuses a smaller volume.sizeGiB).");
  }
}
