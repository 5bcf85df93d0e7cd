import { TerraformProvider } from "cdktf";
import type { Construct } from "constructs";
import { attr, HCLOUD_METADATA, HCLOUD_PROVIDER, type Schema, toHclAttributes, toTerraformAttributes } from "./schema.ts";

/** `provider "hcloud"` (the provider's docs/index.md). Every argument is optional here: synth needs no credentials. */
export interface HcloudProviderConfig {
  /**
   * Hetzner Cloud API token.
   * @default - read from the `HCLOUD_TOKEN` environment variable at plan/apply time (keep it out of the code)
   */
  readonly token?: string;
  /** API endpoint. @default "https://api.hetzner.cloud/v1" */
  readonly endpoint?: string;
  /** How often actions are polled, e.g. "1s"; raise it if you hit rate limits. @default "500ms" */
  readonly pollInterval?: string;
  /** `constant` or `exponential` polling. @default "exponential" */
  readonly pollFunction?: "constant" | "exponential";
}

const SCHEMA: Schema<HcloudProviderConfig> = {
  token: attr.string,
  endpoint: attr.string,
  pollInterval: attr.string,
  pollFunction: attr.string,
};

/** The hcloud provider, pinned to the version the bindings in this folder follow. */
export class HcloudProvider extends TerraformProvider {
  private readonly config: HcloudProviderConfig;
  constructor(scope: Construct, id: string, config: HcloudProviderConfig = {}) {
    super(scope, id, {
      terraformResourceType: HCLOUD_PROVIDER.name,
      terraformGeneratorMetadata: HCLOUD_METADATA,
      terraformProviderSource: HCLOUD_PROVIDER.source,
    });
    this.config = config;
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    return toTerraformAttributes(SCHEMA, { ...this.config });
  }

  protected override synthesizeHclAttributes(): Record<string, unknown> {
    return toHclAttributes(SCHEMA, { ...this.config });
  }
}
