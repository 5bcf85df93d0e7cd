import type { ITerraformDependable } from "cdktf";
import type { Construct } from "constructs";
import type { ResolvedEnvironment } from "../../app/config/types.ts";

/** What the stack needs back from a provider's server: addresses for outputs and DNS. */
export interface ProvisionedServer {
  /** Stable public IPv4 (reserved/primary IP): survives a server rebuild. */
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface ServerPlatformProps {
  readonly env: ResolvedEnvironment;
  /**
   * Renders the server's first boot once the provider knows the data volume's device path (on some clouds
   * it contains the volume's id, known only at apply time): its user data, and what the server must be
   * created after (the first-boot bundle object its user data downloads).
   */
  readonly firstBoot: (volumeDevice: string) => { readonly userData: string; readonly dependsOn: ITerraformDependable[] };
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
