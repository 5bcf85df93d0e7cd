import type { TerraformMetaArguments } from "cdktf";
import type { Construct } from "constructs";
import { attr, HcloudResource, type Schema } from "./schema";

/** `hcloud_ssh_key` (docs/resources/ssh_key.md). */
export interface SshKeyConfig {
  /** Name of the key; unique per Hetzner project (a second key with the same name is rejected). */
  readonly name: string;
  /** The OpenSSH public key line. */
  readonly publicKey: string;
  /** @default - no labels */
  readonly labels?: Readonly<Record<string, string>>;
}

const SCHEMA: Schema<SshKeyConfig> = { name: attr.string, publicKey: attr.string, labels: attr.map };

export class SshKey extends HcloudResource<SshKeyConfig> {
  static readonly tfResourceType = "hcloud_ssh_key";

  constructor(scope: Construct, id: string, config: SshKeyConfig & TerraformMetaArguments) {
    super(scope, id, SshKey.tfResourceType, config, SCHEMA);
  }

  /** ID of the key (String in the provider schema); `hcloud_server.ssh_keys` takes it. */
  get id(): string {
    return this.getStringAttribute("id");
  }

  get fingerprint(): string {
    return this.getStringAttribute("fingerprint");
  }
}
