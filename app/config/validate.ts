import { Checker } from "./checker.ts";
import { ConfigProblem, problem } from "./errors.ts";
import { ENVIRONMENT, PROVIDER_NAMES } from "./fields.ts";
import { AWS_REGIONS, PROVIDERS } from "./providers.ts";
import { resolveSection } from "./schema.ts";
import type { AgencySettings, ClientConfig, EnvironmentConfig, ResolvedEnvironment } from "./types.ts";

export { durationSeconds } from "./checker.ts";

const SLUG = /^[a-z][a-z0-9-]{0,18}[a-z0-9]$/;
const ENV_NAME = /^[a-z][a-z0-9]{0,9}$/;

/**
 * Validates one client file and fills in the defaults. Returns every problem found (never throws), so that
 * one synth reports all of them at once.
 */
export function resolveClient(
  config: ClientConfig,
  sourceFile: string,
  agency: AgencySettings,
): { environments: ResolvedEnvironment[]; problems: ConfigProblem[] } {
  const check = new Checker(sourceFile);
  const environments: ResolvedEnvironment[] = [];
  if (typeof config !== "object" || config === null) {
    check.add("(file)", problem.missing("a client object", "export default a ClientConfig object (see app/clients/example.ts)"));
    return { environments, problems: check.problems };
  }
  check.knownKeys("", config, ["slug", "environments"]);
  const slugOk = check.string("slug", config.slug, SLUG, "must be 2–20 lowercase letters, digits or hyphens, starting with a letter", "acme");

  const envs = config.environments;
  if (typeof envs !== "object" || envs === null || Object.keys(envs).length === 0) {
    check.add("environments", problem.empty("environment", 'add e.g. environments: { prod: { … } }'));
  } else {
    for (const [envName, env] of Object.entries(envs)) {
      const path = `environments.${envName}`;
      if (!ENV_NAME.test(envName)) {
        check.add(path, problem.pattern(envName, "as an environment name must be 1–10 lowercase letters or digits, starting with a letter", "prod"));
        continue;
      }
      const resolved = resolveEnvironment(check, path, env, {
        prefix: agency.namePrefix,
        client: slugOk ? config.slug : "invalid",
        environment: envName,
        sourceFile,
      });
      if (resolved) environments.push(resolved);
    }
  }
  return { environments: check.problems.length === 0 ? environments : [], problems: check.problems };
}

function resolveEnvironment(
  check: Checker,
  path: string,
  env: EnvironmentConfig,
  id: { prefix: string; client: string; environment: string; sourceFile: string },
): ResolvedEnvironment | undefined {
  if (typeof env !== "object" || env === null) {
    check.add(path, problem.missing("an environment object", "see app/clients/example.ts"));
    return undefined;
  }
  const facts = PROVIDER_NAMES.includes(env.provider) ? PROVIDERS[env.provider] : undefined;
  const fields = resolveSection(ENVIRONMENT, env, path, { check, facts });

  const names = {
    volume: `${id.prefix}-${id.client}-${id.environment}-data`,
    bucket: `${id.prefix}-${id.client}-${id.environment}-backups`,
    bucketPrefix: id.environment,
    iamUser: `${id.prefix}-${id.client}-${id.environment}-backup`,
    server: `${id.prefix}-${id.client}-${id.environment}`,
  };
  // S3 bucket names are at most 63 characters; DigitalOcean volume names 64.
  if (names.bucket.length > 63) check.add("slug", problem.tooLong(id.client, `the bucket name ${JSON.stringify(names.bucket)}`, 63));

  return {
    prefix: id.prefix,
    client: id.client,
    environment: id.environment,
    stackName: `${id.client}-${id.environment}`,
    sourceFile: id.sourceFile,
    ...fields,
    names,
  };
}

/** Validates the agency settings (app/agency.ts). */
export function checkAgency(agency: AgencySettings, file = "app/agency.ts"): ConfigProblem[] {
  const check = new Checker(file);
  check.string("namePrefix", agency.namePrefix, /^[a-z][a-z0-9]{1,11}$/, "must be 2–12 lowercase letters or digits, starting with a letter", "pixelco");
  const backend = agency.stateBackend;
  if (backend?.type === "s3") {
    check.string("stateBackend.bucket", backend.bucket, /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name", "pixelco-terraform-state");
    check.oneOf("stateBackend.region", backend.region, "an AWS region", AWS_REGIONS);
  } else if (backend !== undefined && backend.type !== "local") {
    check.oneOf("stateBackend.type", (backend as { type: unknown }).type, "a state backend type", ["local", "s3"]);
  }
  return check.problems;
}

/** A domain names one server: two environments (of any clients) claiming it would fight over DNS and the certificate. */
export function checkUniqueDomains(environments: readonly ResolvedEnvironment[]): ConfigProblem[] {
  const seen = new Map<string, ResolvedEnvironment>();
  const problems: ConfigProblem[] = [];
  for (const env of environments) {
    const name = env.domain?.name;
    if (name === undefined) continue;
    const first = seen.get(name);
    if (first) problems.push(new ConfigProblem(env.sourceFile, `environments.${env.environment}.domain.name`, problem.duplicateDomain(name, `${first.stackName} (${first.sourceFile})`)));
    else seen.set(name, env);
  }
  return problems;
}

/** Slugs must be unique across client files: they name buckets and stacks. */
export function checkUniqueSlugs(clients: readonly { config: ClientConfig; file: string }[]): ConfigProblem[] {
  const seen = new Map<string, string>();
  const problems: ConfigProblem[] = [];
  for (const { config, file } of clients) {
    const slug = config?.slug;
    if (typeof slug !== "string") continue;
    const first = seen.get(slug);
    if (first) problems.push(new ConfigProblem(file, "slug", problem.duplicate(slug, first)));
    else seen.set(slug, file);
  }
  return problems;
}
