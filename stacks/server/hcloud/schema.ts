import {
  booleanToHclTerraform,
  booleanToTerraform,
  canInspect,
  hashMapper,
  hashMapperHcl,
  listMapper,
  listMapperHcl,
  numberToHclTerraform,
  numberToTerraform,
  stringToHclTerraform,
  stringToTerraform,
  TerraformResource,
  Token,
  type TerraformMetaArguments,
  type TerraformProviderGeneratorMetadata,
  Tokenization,
} from "cdktf";
import type { Construct } from "constructs";

/**
 * The hcloud provider these bindings follow: attribute names and types are taken from its documentation
 * (the provider's docs/resources/*.md) and resource schemas at this tag of hetznercloud/terraform-provider-hcloud.
 * Bumping it means re-reading those docs; the tests in test/hcloud-bindings.test.ts pin every attribute.
 */
export const HCLOUD_PROVIDER = {
  name: "hcloud",
  source: "hetznercloud/hcloud",
  version: "1.68.0",
} as const;

export const HCLOUD_METADATA: TerraformProviderGeneratorMetadata = {
  providerName: HCLOUD_PROVIDER.name,
  providerVersion: HCLOUD_PROVIDER.version,
};

/**
 * How one configuration attribute is written, in the provider schema's own terms. cdktf needs it twice:
 * once for `cdk.tf.json` (`synthesizeAttributes`) and once, with type information, for `cdktf synth --hcl`
 * (`synthesizeHclAttributes`; without it the resource is written to `cdk.tf` with no attributes at all).
 */
export type Attribute =
  | { readonly kind: "string" | "number" | "boolean" }
  | { readonly kind: "list" | "set"; readonly of: "string" | "number" }
  /** A map of strings (labels). */
  | { readonly kind: "map" }
  /** Nested blocks, e.g. `rule { … }` or `public_net { … }`. */
  | { readonly kind: "blocks"; readonly collection: "list" | "set"; readonly schema: Schema<any> };

/** One entry per config field (camelCase); the Terraform name is its snake_case form. */
export type Schema<Config> = { readonly [Field in keyof Config]-?: Attribute };

export const attr = {
  string: { kind: "string" },
  number: { kind: "number" },
  boolean: { kind: "boolean" },
  stringList: { kind: "list", of: "string" },
  stringSet: { kind: "set", of: "string" },
  numberSet: { kind: "set", of: "number" },
  map: { kind: "map" },
  blockSet: <Block>(schema: Schema<Block>): Attribute => ({ kind: "blocks", collection: "set", schema }),
} as const satisfies Record<string, Attribute | ((schema: Schema<any>) => Attribute)>;

/** `serverType` → `server_type`, `ipv4Enabled` → `ipv4_enabled`. */
export const snakeCase = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const scalarJson = { string: stringToTerraform, number: numberToTerraform, boolean: booleanToTerraform };
const scalarHcl = { string: stringToHclTerraform, number: numberToHclTerraform, boolean: booleanToHclTerraform };

/** A nested block's value as given: a token or a plain object (blocks cannot be complex cdktf objects here). */
const isPlainStruct = (value: unknown): value is Record<string, unknown> => canInspect(value) && !Tokenization.isResolvable(value);

const hasTokenElement = (value: unknown): boolean => Array.isArray(value) && value.some((element) => Token.isUnresolved(element));

/** The attributes of `config` as they appear in `cdk.tf.json`. Unset fields are left out. */
export function toTerraformAttributes(schema: Schema<any>, config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, attribute] of Object.entries(schema) as [string, Attribute][]) {
    const value = config[field];
    if (value === undefined) continue;
    switch (attribute.kind) {
      case "string":
      case "number":
      case "boolean":
        out[snakeCase(field)] = scalarJson[attribute.kind](value);
        break;
      case "list":
      case "set":
        out[snakeCase(field)] = listMapper(scalarJson[attribute.of], false)(value);
        break;
      case "map":
        out[snakeCase(field)] = hashMapper(stringToTerraform)(value);
        break;
      case "blocks": {
        const block = (struct: unknown) => (isPlainStruct(struct) ? toTerraformAttributes(attribute.schema, struct) : struct);
        out[snakeCase(field)] = listMapper(block, true)(value);
        break;
      }
    }
  }
  return out;
}

/** The same attributes with the type information cdktf's HCL renderer needs. */
export function toHclAttributes(schema: Schema<any>, config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, attribute] of Object.entries(schema) as [string, Attribute][]) {
    const value = config[field];
    if (value === undefined) continue;
    let entry: { value: unknown; isBlock: boolean; type: string; storageClassType: string };
    switch (attribute.kind) {
      case "string":
      case "number":
      case "boolean":
        entry = { value: scalarHcl[attribute.kind](value), isBlock: false, type: "simple", storageClassType: attribute.kind };
        break;
      case "list":
      case "set": {
        // cdktf 0.21 writes the elements of a "numberList" bare, so a reference comes out as `$ {a.b}`,
        // which is not HCL. Written as strings ("${a.b}", "42"), Terraform converts them back to numbers.
        const asStrings = attribute.of === "number" && hasTokenElement(value);
        entry = {
          value: asStrings
            ? listMapperHcl(stringToHclTerraform, false)((value as unknown[]).map((e) => (Token.isUnresolved(e) ? e : String(e))))
            : listMapperHcl(scalarHcl[attribute.of], false)(value),
          isBlock: false,
          type: attribute.kind,
          storageClassType: attribute.of === "number" && !asStrings ? "numberList" : "stringList",
        };
        break;
      }
      case "map":
        entry = { value: hashMapperHcl(stringToHclTerraform)(value), isBlock: false, type: "map", storageClassType: "stringMap" };
        break;
      case "blocks": {
        const block = (struct: unknown) => (isPlainStruct(struct) ? toHclAttributes(attribute.schema, struct) : struct);
        entry = { value: listMapperHcl(block, true)(value), isBlock: true, type: attribute.collection, storageClassType: "blockList" };
        break;
      }
    }
    out[snakeCase(field)] = entry;
  }
  return out;
}

/**
 * Base of every hcloud resource binding: a TerraformResource whose attributes come from a typed config and
 * its schema. Subclasses add the config interface, the schema and getters for exported attributes.
 */
export abstract class HcloudResource<Config extends object> extends TerraformResource {
  private readonly attributeValues: Record<string, unknown>;

  private readonly schema: Schema<Config>;
  protected constructor(
    scope: Construct,
    id: string,
    terraformResourceType: string,
    config: Config & TerraformMetaArguments,
    schema: Schema<Config>,
  ) {
    super(scope, id, {
      terraformResourceType,
      terraformGeneratorMetadata: HCLOUD_METADATA,
      provider: config.provider,
      dependsOn: config.dependsOn,
      count: config.count,
      lifecycle: config.lifecycle,
      provisioners: config.provisioners,
      connection: config.connection,
      forEach: config.forEach,
    });
    this.schema = schema;
    this.attributeValues = { ...config } as Record<string, unknown>;
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    return toTerraformAttributes(this.schema, this.attributeValues);
  }

  protected override synthesizeHclAttributes(): Record<string, unknown> {
    return toHclAttributes(this.schema, this.attributeValues);
  }
}
