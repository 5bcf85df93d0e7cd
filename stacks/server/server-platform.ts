import type { ITerraformDependable } from "cdktf";
import type { Construct } from "constructs";
import type { ResolvedEnvironment } from "../../app/config/types.ts";

/** What the stack needs back from a provider's server: addresses for outputs and DNS. */
export interface ProvisionedServer {
  /** Stable public IPv4 (reserved/primary IP) of the first server: survives a server rebuild. */
  readonly ipv4: string;
  readonly ipv6: string;
  /** The stable IPv4 of every app server, the first first (`servers`: one, or more behind a load balancer). */
  readonly ipv4s: readonly string[];
  /** The load balancer's IPv4, when there is one (`servers` > 1). */
  readonly loadBalancerIp?: string;
  /** The managed PostgreSQL cluster's connection strings and CA, with `database.engine: "postgres"`. */
  readonly database?: ProvisionedDatabase;
}

/** References (known at apply time) to the managed database, for the stack's outputs. */
export interface ProvisionedDatabase {
  readonly url: string;
  readonly drillUrl: string;
  readonly adminUrl: string;
  readonly caCertificate: string;
}

export interface ServerPlatformProps {
  readonly env: ResolvedEnvironment;
  /**
   * Renders the server's first boot once the provider knows the data volume's device path (on some clouds
   * it contains the volume's id, known only at apply time): its user data, and what the server must be
   * created after (the first-boot bundle object its user data downloads). `server` is the server's number, 1 for the
   * first (`servers` > 1: 2, 3, …).
   */
  readonly firstBoot: (volumeDevice: string, server: number) => { readonly userData: string; readonly dependsOn: ITerraformDependable[] };
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * A VPS provider: creates, inside `scope`, the provider block, a server with a persistent data volume
 * (`prevent_destroy`), a firewall (SSH only from the configured CIDRs, 80/443 from anywhere, nothing else
 * inbound) and an address that survives a rebuild. One implementation per provider in this folder.
 */
export interface ServerPlatform {
  create(scope: Construct, props: ServerPlatformProps): ProvisionedServer;
}
