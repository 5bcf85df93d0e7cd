import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { ConfigError, type ConfigProblem } from "./errors";
import type { AgencySettings, ClientConfig, ResolvedEnvironment } from "./types";
import { checkAgency, checkUniqueSlugs, resolveClient } from "./validate";

/** The client files in `dir`: every `<name>.ts` except helpers starting with `_`. */
export function clientFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".ts") && !name.startsWith("_") && !name.endsWith(".d.ts"))
    .sort()
    .map((name) => join(dir, name));
}

/** Reads one client file's default export. */
export function readClientFile(file: string): ClientConfig {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(file) as { default?: ClientConfig };
  return mod.default as ClientConfig;
}

/**
 * Validates the agency settings and every client, and returns all client environments with defaults
 * filled in. Throws one ConfigError naming every problem in every file.
 */
export function loadEnvironments(
  agency: AgencySettings,
  clients: readonly { config: ClientConfig; file: string }[],
): ResolvedEnvironment[] {
  const problems: ConfigProblem[] = [...checkAgency(agency)];
  const environments: ResolvedEnvironment[] = [];
  for (const { config, file } of clients) {
    const result = resolveClient(config, file, agency);
    problems.push(...result.problems);
    environments.push(...result.environments);
  }
  problems.push(...checkUniqueSlugs(clients));
  if (problems.length > 0) throw new ConfigError(problems);
  return environments;
}

/** Loads every client file in `dir` (paths in messages are relative to `root`). */
export function loadClientsDir(agency: AgencySettings, dir: string, root = process.cwd()): ResolvedEnvironment[] {
  // Messages name files relative to the repo (app/clients/acme.ts), or absolute when outside it.
  const display = (file: string) => (relative(root, file).startsWith("..") ? file : relative(root, file));
  const clients = clientFiles(dir).map((file) => ({ config: readClientFile(file), file: display(file) }));
  return loadEnvironments(agency, clients);
}
