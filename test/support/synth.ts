import { App, Testing } from "cdktf";
import { rmSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { AGENCY } from "../../app/agency.ts";
import type { AgencySettings, ResolvedEnvironment } from "../../app/config/types.ts";
import { ClientStack } from "../../stacks/client-stack.ts";

/** A synthesized stack as parsed Terraform JSON, with helpers to find resources by type. */
export interface SynthesizedStack {
  readonly json: Record<string, any>;
  /** All resources of a Terraform type, as a list of their configurations. */
  resources(type: string): Record<string, any>[];
  /** The one resource of a type (fails the test if there is not exactly one). */
  resource(type: string): Record<string, any>;
}

/** Testing.app() makes a temp dir per call; those made here are removed when the test file ends. */
const scratchApps: App[] = [];
afterAll(() => {
  for (const app of scratchApps.splice(0)) rmSync(app.outdir, { recursive: true, force: true });
});
export function scratchApp(): App {
  const app = Testing.app();
  scratchApps.push(app);
  return app;
}

export function synthesize(env: ResolvedEnvironment, agency: AgencySettings = AGENCY): SynthesizedStack {
  const stack = new ClientStack(scratchApp(), { env, agency });
  const json = JSON.parse(Testing.synth(stack)) as Record<string, any>;
  const resources = (type: string) => Object.values(json.resource?.[type] ?? {}) as Record<string, any>[];
  return {
    json,
    resources,
    resource(type) {
      const all = resources(type);
      if (all.length !== 1) throw new Error(`expected exactly one ${type}, found ${all.length}`);
      return all[0];
    },
  };
}

/**
 * The stack as a snapshot should show it: the first-boot bundle object's gzip'd content (and any gzip'd
 * blob in a user data) replaced by its text, so that a template change shows as a text diff of that file,
 * not as an opaque blob (nor as zlib's bytes, which may differ between Node versions).
 */
export function readableSnapshot(json: Record<string, any>): Record<string, any> {
  return JSON.parse(JSON.stringify(json), (key, value) =>
    key === "content_base64" && typeof value === "string" && value.startsWith("H4sI")
      ? `<gzip+base64 of these lines>\n${gunzipSync(Buffer.from(value, "base64")).toString("utf8")}`
      : key === "user_data" && typeof value === "string"
      ? value.replace(/^( +)content: (H4sI[A-Za-z0-9+/=]+)$/m, (_, indent: string, blob: string) => {
          const text = gunzipSync(Buffer.from(blob, "base64")).toString("utf8");
          return `${indent}content: <gzip+base64 of these ${Buffer.byteLength(text)} bytes>\n${text.replace(/^/gm, `${indent}  | `)}`;
        })
      : value,
  );
}
