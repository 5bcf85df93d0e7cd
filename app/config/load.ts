import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { extname, join, relative } from "node:path";
import { ConfigError, ConfigProblem, problem } from "./errors.ts";
import type { AgencySettings, ClientConfig, ResolvedEnvironment } from "./types.ts";
import { checkAgency, checkUniqueDomains, checkUniqueSlugs, resolveClient } from "./validate.ts";

/** Files that look like client configuration in another form: named, since the kit would skip them. */
const WRONG_KIND = [".js", ".mjs", ".cjs", ".mts", ".cts", ".tsx", ".json", ".yaml", ".yml", ".toml"];

/** The client files in `dir`: every `<name>.ts` except helpers starting with `_`. */
export function clientFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".ts") && !name.startsWith("_") && !name.endsWith(".d.ts"))
    .sort()
    .map((name) => join(dir, name));
}

/**
 * Loads a client file synchronously. The kit's modules are ES modules (node, tsx, zx): require comes from
 * createRequire. Under Jest they are compiled to CommonJS, and Jest's own require keeps its transform.
 */
const load = typeof require === "function" ? require : createRequire(import.meta.url);

/** Reads one client file's default export. */
export function readClientFile(file: string): ClientConfig {
  const mod = load(file) as { default?: ClientConfig };
  return mod.default as ClientConfig;
}

/**
 * What is wrong with the clients directory itself: missing, not a directory, no client file in it, or files
 * that look like client configuration in a form the kit does not read. `shown` is how messages name it.
 */
export function clientsDirProblems(dir: string, shown: string): ConfigProblem[] {
  const at = (message: string, file = shown) => new ConfigProblem(file, "(directory)", message);
  if (!existsSync(dir)) return [at(problem.noClientsDir("does not exist"))];
  if (!statSync(dir).isDirectory()) return [at(problem.noClientsDir("is not a directory"))];
  const names = readdirSync(dir);
  const wrong = names.filter((name) => WRONG_KIND.includes(extname(name)) && !name.startsWith("_"));
  const problems = wrong.map((name) => at(problem.wrongKindOfFile(name), join(shown, name)));
  if (clientFiles(dir).length === 0 && wrong.length === 0) problems.push(at(problem.noClientFiles(shown)));
  return problems;
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
  problems.push(...checkUniqueSlugs(clients), ...checkUniqueDomains(environments));
  if (problems.length > 0) throw new ConfigError(problems);
  return environments;
}

/** Loads every client file in `dir` (paths in messages are relative to `root`). */
export function loadClientsDir(agency: AgencySettings, dir: string, root = process.cwd()): ResolvedEnvironment[] {
  // Messages name files relative to the repo (app/clients/acme.ts), or absolute when outside it.
  const display = (file: string) => (relative(root, file).startsWith("..") ? file : relative(root, file));
  const dirProblems = clientsDirProblems(dir, display(dir) || dir);
  if (dirProblems.length > 0) throw new ConfigError(dirProblems);
  const unreadable: ConfigProblem[] = [];
  const clients = clientFiles(dir).flatMap((file) => {
    try {
      return [{ config: readClientFile(file), file: display(file) }];
    } catch (error) {
      // A syntax error or a throw in the file: named with the first line of the error, not a stack trace.
      unreadable.push(new ConfigProblem(display(file), "(file)", problem.unreadableClientFile(String((error as Error)?.message ?? error).split("\n")[0])));
      return [];
    }
  });
  if (unreadable.length > 0) throw new ConfigError(unreadable);
  return loadEnvironments(agency, clients);
}
