import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/** `hcloud_volume_attachment` (the provider's docs/resources/volume_attachment.md). Both ids force a new attachment. */
export interface VolumeAttachmentConfig {
  readonly volumeId: number;
  readonly serverId: number;
  /** Let Hetzner mount the volume on attach. @default - provider decides (computed) */
  readonly automount?: boolean;
}

const SCHEMA: Schema<VolumeAttachmentConfig> = { volumeId: attr.number, serverId: attr.number, automount: attr.boolean };

export class VolumeAttachment extends HcloudResource<VolumeAttachmentConfig> {
  static readonly tfResourceType = "hcloud_volume_attachment";

  constructor(scope: Construct, id: string, config: VolumeAttachmentConfig & TerraformMetaArguments) {
    super(scope, id, VolumeAttachment.tfResourceType, config, SCHEMA);
  }

  get id(): string {
    return this.getStringAttribute("id");
  }
}
