import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/**
 * `hcloud_primary_ip` (the provider's docs/resources/primary_ip.md). Assign it through the server's `public_net` block,
 * not `assignee_id` (the provider warns on `assignee_type` without `assignee_id`).
 */
export interface PrimaryIpConfig {
  readonly name: string;
  readonly type: "ipv4" | "ipv6";
  /** Location name, e.g. `fsn1` (`datacenter` was removed in provider 1.67). */
  readonly location: string;
  /**
   * Delete the address together with the server it is assigned to. Keep it `false`: the address must
   * survive a server rebuild (the provider docs also advise against `true`).
   * @default false
   */
  readonly autoDelete?: boolean;
  /**
   * Hetzner-side lock against deletion. The provider does NOT lift it on destroy, although its docs say so
   * (hetznercloud/terraform-provider-hcloud issue 1206): lift it first (docs/runbook.md, "Retiring an
   * environment"). @default false
   */
  readonly deleteProtection?: boolean;
  /** @default - no labels */
  readonly labels?: Readonly<Record<string, string>>;
}

const SCHEMA: Schema<PrimaryIpConfig> = {
  name: attr.string,
  type: attr.string,
  location: attr.string,
  autoDelete: attr.boolean,
  deleteProtection: attr.boolean,
  labels: attr.map,
};

export class PrimaryIp extends HcloudResource<PrimaryIpConfig> {
  static readonly tfResourceType = "hcloud_primary_ip";

  constructor(scope: Construct, id: string, config: PrimaryIpConfig & TerraformMetaArguments) {
    super(scope, id, PrimaryIp.tfResourceType, config, SCHEMA);
  }

  /** ID of the address (Number in the provider schema); `public_net.ipv4`/`ipv6` of a server take it. */
  get id(): number {
    return this.getNumberAttribute("id");
  }

  /** The address; for an IPv6 primary IP the first address of its /64 (the network address). */
  get ipAddress(): string {
    return this.getStringAttribute("ip_address");
  }

  /** The /64 of an IPv6 primary IP. */
  get ipNetwork(): string {
    return this.getStringAttribute("ip_network");
  }
}
