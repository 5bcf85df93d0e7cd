import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/** One `rule { … }` block of `hcloud_firewall`. */
export interface FirewallRule {
  readonly direction: "in" | "out";
  readonly protocol: "tcp" | "udp" | "icmp" | "gre" | "esp";
  /** Port, range (`80-85`) or `any`; required for tcp and udp. */
  readonly port?: string;
  /** CIDRs allowed in (direction `in`). */
  readonly sourceIps?: readonly string[];
  /** CIDRs allowed out (direction `out`). */
  readonly destinationIps?: readonly string[];
  /** @default - none */
  readonly description?: string;
}

/**
 * `hcloud_firewall` (the provider's docs/resources/firewall.md). Stateful; inbound is denied unless a rule allows it, and
 * with no `out` rule all outbound traffic is allowed. Attach servers with `hcloud_firewall_attachment`
 * (`apply_to` is not offered here).
 */
export interface FirewallConfig {
  readonly name: string;
  readonly rule: readonly FirewallRule[];
  /** @default - no labels */
  readonly labels?: Readonly<Record<string, string>>;
}

const RULE: Schema<FirewallRule> = {
  direction: attr.string,
  protocol: attr.string,
  port: attr.string,
  sourceIps: attr.stringSet,
  destinationIps: attr.stringSet,
  description: attr.string,
};

const SCHEMA: Schema<FirewallConfig> = { name: attr.string, rule: attr.blockSet(RULE), labels: attr.map };

export class Firewall extends HcloudResource<FirewallConfig> {
  static readonly tfResourceType = "hcloud_firewall";

  constructor(scope: Construct, id: string, config: FirewallConfig & TerraformMetaArguments) {
    super(scope, id, Firewall.tfResourceType, config, SCHEMA);
  }

  get id(): string {
    return this.getStringAttribute("id");
  }
}
