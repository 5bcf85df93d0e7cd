import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/** The `public_net { … }` block of `hcloud_server`: which primary IPs the server gets. */
export interface ServerPublicNet {
  /** @default true */
  readonly ipv4Enabled?: boolean;
  /** ID of an `hcloud_primary_ip` of type ipv4. @default - a new address, deleted with the server */
  readonly ipv4?: number;
  /** @default true */
  readonly ipv6Enabled?: boolean;
  /** ID of an `hcloud_primary_ip` of type ipv6. @default - a new network, deleted with the server */
  readonly ipv6?: number;
}

/** `hcloud_server` (the provider's docs/resources/server.md). */
export interface ServerConfig {
  /** Unique per project and a valid host name (RFC 1123). */
  readonly name: string;
  /** Server type, e.g. `cx23`. */
  readonly serverType: string;
  /** Image name or id, e.g. `debian-13`. */
  readonly image: string;
  /** Location name, e.g. `fsn1`. */
  readonly location: string;
  /** cloud-init user data (≤ 32 KiB). Any change replaces the server. @default - none */
  readonly userData?: string;
  /**
   * `hcloud_ssh_key` ids or names, put on root at creation. Any change replaces the server. The provider
   * resolves names only when it creates the server, so a missing key fails half-way through an apply: pass
   * ids from the `hcloud_ssh_key` data source (./ssh-key.ts), which fails the plan instead.
   * @default - none (Hetzner mails a root password)
   */
  readonly sshKeys?: readonly string[];
  /** @default - a new IPv4 and IPv6 primary IP, deleted with the server */
  readonly publicNet?: readonly ServerPublicNet[];
  /** Firewalls applied before the server first boots. @default - none */
  readonly firewallIds?: readonly number[];
  /**
   * Ignore firewall changes read back from the API: set it when an `hcloud_firewall_attachment` also
   * manages this server's firewalls. @default false
   */
  readonly ignoreRemoteFirewallIds?: boolean;
  /**
   * On a `server_type` change, resize CPU and RAM only and keep the disk: a grown disk is permanent, and the
   * server could never go back to a smaller type. @default false (the disk grows)
   */
  readonly keepDisk?: boolean;
  /** Try an ACPI shutdown before deleting the server. @default false */
  readonly shutdownBeforeDeletion?: boolean;
  /** @default - no labels */
  readonly labels?: Readonly<Record<string, string>>;
}

const PUBLIC_NET: Schema<ServerPublicNet> = {
  ipv4Enabled: attr.boolean,
  ipv4: attr.number,
  ipv6Enabled: attr.boolean,
  ipv6: attr.number,
};

const SCHEMA: Schema<ServerConfig> = {
  name: attr.string,
  serverType: attr.string,
  image: attr.string,
  location: attr.string,
  userData: attr.string,
  sshKeys: attr.stringList,
  publicNet: attr.blockSet(PUBLIC_NET),
  firewallIds: attr.numberSet,
  ignoreRemoteFirewallIds: attr.boolean,
  keepDisk: attr.boolean,
  shutdownBeforeDeletion: attr.boolean,
  labels: attr.map,
};

export class Server extends HcloudResource<ServerConfig> {
  static readonly tfResourceType = "hcloud_server";

  constructor(scope: Construct, id: string, config: ServerConfig & TerraformMetaArguments) {
    super(scope, id, Server.tfResourceType, config, SCHEMA);
  }

  /** ID of the server (an integer; Terraform's resource id, a string, as the provider's SDKv2 schema has it). */
  get id(): string {
    return this.getStringAttribute("id");
  }

  get ipv4Address(): string {
    return this.getStringAttribute("ipv4_address");
  }

  /** The first address (`…::1`) of the server's IPv6 /64 — the one Hetzner configures on the server. */
  get ipv6Address(): string {
    return this.getStringAttribute("ipv6_address");
  }
}
