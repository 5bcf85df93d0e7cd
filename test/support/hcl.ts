// @cdktf/hcl2json is HashiCorp's HCL parser compiled to WebAssembly (CDK Terrain's @cdktn/hcl2json, a
// devDependency under cdktf's name): it parses HCL, templates included, offline and without a terraform binary.
import { parse } from "@cdktf/hcl2json";

/** Parses HCL the way Terraform does; rejects with the parser's message (file, line, problem) if invalid. */
export function parseHcl(text: string, filename = "cdk.tf"): Promise<Record<string, unknown>> {
  return parse(filename, text) as Promise<Record<string, unknown>>;
}
