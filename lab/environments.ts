import { join } from "node:path";
import { AGENCY } from "../app/agency.ts";
import { loadClientsDir } from "../app/config/load.ts";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import type { ServerValues } from "../cloud-init/render.ts";
import { digitalOceanVolumeDevice } from "../stacks/server/digitalocean.ts";

import { REPO_ROOT } from "../app/repo.ts";

export { REPO_ROOT };

/** Every shipped client environment, validated as synth validates them. */
export function shippedEnvironments(): ResolvedEnvironment[] {
  return loadClientsDir(AGENCY, join(REPO_ROOT, "app", "clients"), REPO_ROOT);
}

export function shippedEnvironment(stackName: string): ResolvedEnvironment {
  const env = shippedEnvironments().find((e) => e.stackName === stackName);
  if (!env) throw new Error(`no shipped client environment ${stackName}`);
  return env;
}

/** Concrete stand-ins for what the stack passes as Terraform references. */
export function concreteServerValues(env: ResolvedEnvironment, overrides: Partial<ServerValues> = {}): ServerValues {
  return {
    volumeDevice: digitalOceanVolumeDevice(env.names.volume),
    bucket: env.names.bucket,
    region: env.backups.region,
    s3Credentials: { accessKeyId: "AKIAEXAMPLEEXAMPLE00", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
    appSecrets: Object.fromEntries(env.app.secrets.map((name) => [name, `test-value-of-${name}`])),
    alertUrls: { deadMan: "https://hc-ping.com/test-dead-man-uuid", webhook: "https://hooks.slack.com/services/T0TEST/B0TEST/testWebhookToken" },
    ...overrides,
  };
}

export const base64 = (content: string) => Buffer.from(content, "utf8").toString("base64");
