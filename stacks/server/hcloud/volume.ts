import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema.ts";

/**
 * `hcloud_volume` (the provider's docs/resources/volume.md), created in a location and attached with
 * `hcloud_volume_attachment` (so `server_id` is not offered here).
 */
export interface VolumeConfig {
  /** Unique per project. */
  readonly name: string;
  /** Size in GB (Hetzner: 10 to 10240). Can grow, never shrink. */
  readonly size: number;
  /** Location name, e.g. `fsn1`; must be the server's location. */
  readonly location: string;
  /** Filesystem created on the new volume: `ext4` or `xfs`. @default - unformatted */
  readonly format?: "ext4" | "xfs";
  /** Let Hetzner mount the volume when attaching (needs a server). @default false */
  readonly automount?: boolean;
  /**
   * Hetzner-side lock against deletion, from the console and the API alike. The provider does NOT lift it
   * when Terraform destroys the volume, although its docs say so (hetznercloud/terraform-provider-hcloud
   * issue 1206): a destroy then fails with `protected` half-way through. Lift it first (docs/runbook.md,
   * "Retiring an environment"). @default false
   */
  readonly deleteProtection?: boolean;
  /** @default - no labels */
  readonly labels?: Readonly<Record<string, string>>;
}

const SCHEMA: Schema<VolumeConfig> = {
  name: attr.string,
  size: attr.number,
  location: attr.string,
  format: attr.string,
  automount: attr.boolean,
  deleteProtection: attr.boolean,
  labels: attr.map,
};

export class Volume extends HcloudResource<VolumeConfig> {
  static readonly tfResourceType = "hcloud_volume";

  constructor(scope: Construct, id: string, config: VolumeConfig & TerraformMetaArguments) {
    super(scope, id, Volume.tfResourceType, config, SCHEMA);
  }

  /** ID of the volume (an integer; Terraform's resource id, a string, as the provider's SDKv2 schema has it). */
  get id(): string {
    return this.getStringAttribute("id");
  }

  /** Device path inside the server, e.g. `/dev/disk/by-id/scsi-0HC_Volume_<id>`. */
  get linuxDevice(): string {
    return this.getStringAttribute("linux_device");
  }
}
