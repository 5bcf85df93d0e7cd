import { TerraformDataSource } from "cdktf";
import type { Construct } from "constructs";
import { attr, HCLOUD_METADATA, type Schema, toHclAttributes, toTerraformAttributes } from "./schema.ts";

/**
 * `data "hcloud_ssh_key"` (the provider's docs/data-sources/ssh_key.md): a key already registered in the project, looked up
 * at plan time. A server given the key's id fails the plan when the key is missing; given its name, the
 * provider looks it up only when it creates the server, half-way through an apply.
 */
export interface DataSshKeyConfig {
  /** The name the key is registered under in the project (exactly one of name, id, fingerprint). */
  readonly name: string;
}

const SCHEMA: Schema<DataSshKeyConfig> = { name: attr.string };

export class DataSshKey extends TerraformDataSource {
  static readonly tfResourceType = "hcloud_ssh_key";

  private readonly config: DataSshKeyConfig;
  constructor(scope: Construct, id: string, config: DataSshKeyConfig) {
    super(scope, id, { terraformResourceType: DataSshKey.tfResourceType, terraformGeneratorMetadata: HCLOUD_METADATA });
    this.config = config;
  }

  /** ID of the key (Number in the provider schema); `ssh_keys` of a server takes it. */
  get id(): number {
    return this.getNumberAttribute("id");
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    return toTerraformAttributes(SCHEMA, { ...this.config });
  }

  protected override synthesizeHclAttributes(): Record<string, unknown> {
    return toHclAttributes(SCHEMA, { ...this.config });
  }
}
