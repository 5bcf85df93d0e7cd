import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/**
 * `hcloud_firewall_attachment` (the provider's docs/resources/firewall_attachment.md). Only one per firewall: it lists
 * every server the firewall applies to.
 */
export interface FirewallAttachmentConfig {
  readonly firewallId: number;
  /** @default - no servers by id */
  readonly serverIds?: readonly number[];
  /** @default - no label selectors */
  readonly labelSelectors?: readonly string[];
}

const SCHEMA: Schema<FirewallAttachmentConfig> = {
  firewallId: attr.number,
  serverIds: attr.numberSet,
  labelSelectors: attr.stringSet,
};

export class FirewallAttachment extends HcloudResource<FirewallAttachmentConfig> {
  static readonly tfResourceType = "hcloud_firewall_attachment";

  constructor(scope: Construct, id: string, config: FirewallAttachmentConfig & TerraformMetaArguments) {
    super(scope, id, FirewallAttachment.tfResourceType, config, SCHEMA);
  }

  get id(): string {
    return this.getStringAttribute("id");
  }
}
