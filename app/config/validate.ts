import { isIP } from "node:net";
import { ConfigProblem, problem } from "./errors";
import { AWS_REGIONS, PROVIDERS, type ProviderFacts } from "./providers";
import { isOnCalendar } from "./on-calendar";
import type {
  AgencySettings,
  AppConfig,
  ClientConfig,
  EnvironmentConfig,
  ProviderName,
  ResolvedEnvironment,
} from "./types";

/** Defaults that do not depend on the provider. Documented on the fields in ./types.ts. */
export const DEFAULTS = {
  app: { ref: "main", port: 8000, healthPath: "/healthz", tasks: { migrate: "migrate", start: "start" } },
  volumeSizeGiB: 10,
  backups: {
    region: "eu-central-1",
    noncurrentVersionDays: 30,
    litestream: { syncInterval: "1s", snapshotInterval: "1h", retention: "72h" },
    fallback: { onCalendar: "*-*-* 03:30:00", keepDays: 7 },
  },
  drill: { onCalendar: "monthly" },
} as const;

/** Environment variables the kit sets for the app itself. */
const RESERVED_ENV = ["DATABASE_URL", "PORT", "HOST", "DENO_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
/** Loopback ports the server already uses (Litestream metrics, Caddy admin). */
const RESERVED_PORTS = [2019, 9090];

const SLUG = /^[a-z][a-z0-9-]{0,18}[a-z0-9]$/;
const ENV_NAME = /^[a-z][a-z0-9]{0,9}$/;
const ENV_VAR = /^[A-Z_][A-Z0-9_]*$/;
const TASK = /^[A-Za-z0-9][A-Za-z0-9:_-]*$/;
const GIT_REF = /^(?!-)(?!.*\.\.)[A-Za-z0-9._\/-]+$/;
const GIT_URL = /^(https:\/\/[^\s]+|ssh:\/\/[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$/;
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const DURATION = /^(\d+)(s|m|h)$/;
const PUBLIC_KEY = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$/;

/** Seconds in a Litestream duration such as "1s", "10m", "72h"; undefined if it is not one. */
export function durationSeconds(value: string): number | undefined {
  const match = DURATION.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

/**
 * An IPv4 or IPv6 CIDR with its prefix length; undefined if it is not one. The length is strict decimal
 * ("/8", never "/08"), so no spelling of "/0" slips past the whole-internet check.
 */
function parseCidr(value: string): { family: 4 | 6; bits: number } | undefined {
  const [address, bits, ...rest] = value.split("/");
  if (rest.length > 0 || bits === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(bits) || address.includes("%")) return undefined;
  const family = isIP(address);
  const n = Number(bits);
  if (family === 4 && n <= 32) return { family, bits: n };
  if (family === 6 && n <= 128) return { family, bits: n };
  return undefined;
}

/** The widest SSH range allowed per family: wider ones are not an office or a VPN. */
const WIDEST_SSH_PREFIX = { 4: 8, 6: 16 } as const;

/**
 * Where a git URL carries credentials (`https://user:token@…`, `https://token@…`, `ssh://user:password@…`);
 * undefined if it has none. ssh user names (`ssh://git@…`, `git@host:path`) are not credentials.
 */
function urlCredentials(url: string): { shown: string; host: string; path: string } | undefined {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)@([^/?#]*)(.*)$/s.exec(url);
  if (!match) return undefined;
  const [, scheme, userinfo, host, path] = match;
  const ssh = scheme.toLowerCase() === "ssh";
  if (ssh && !userinfo.includes(":")) return undefined;
  const shownUserinfo = ssh ? `${userinfo.slice(0, userinfo.indexOf(":"))}:***` : "***";
  return { shown: `${scheme}://${shownUserinfo}@${host}${path}`, host: host.replace(/:\d*$/, ""), path: path.replace(/^\//, "") };
}

/** Collects problems for one client file; each check adds at most one problem per field. */
class Checker {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly file: string) {}

  add(path: string, message: string): void {
    this.problems.push(new ConfigProblem(this.file, path, message));
  }

  /** Fields not in `known` are almost always typos of optional fields, which would otherwise be ignored. */
  knownKeys(path: string, value: object, known: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) this.add(path ? `${path}.${key}` : key, problem.unknownKey(key, known));
    }
  }

  string(path: string, value: unknown, rule: RegExp, ruleText: string, example: string): value is string {
    if (typeof value !== "string") {
      this.add(path, value === undefined ? problem.missing(ruleText, `set it, e.g. ${JSON.stringify(example)}`) : problem.notString(value));
      return false;
    }
    if (!rule.test(value)) {
      this.add(path, problem.pattern(value, ruleText, example));
      return false;
    }
    return true;
  }

  integer(path: string, value: unknown, min: number, max: number): value is number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.add(path, problem.notInteger(value, min, max));
      return false;
    }
    return true;
  }

  oneOf(path: string, value: unknown, kind: string, allowed: readonly string[]): value is string {
    if (typeof value !== "string" || !allowed.includes(value)) {
      this.add(path, problem.notOneOf(value, kind, allowed));
      return false;
    }
    return true;
  }

  /** A string that ends up in the server's environment files (cloud-init/template.ts `envQuote`). */
  envSafe(path: string, value: string, fix: string): boolean {
    if (!value.includes("'")) return true;
    this.add(path, problem.singleQuote(value, fix));
    return false;
  }

  onCalendar(path: string, value: unknown): void {
    if (typeof value !== "string") this.add(path, problem.notString(value));
    else if (!isOnCalendar(value)) this.add(path, problem.notCalendar(value));
  }

  duration(path: string, value: string, minSeconds: number): void {
    const seconds = durationSeconds(value);
    if (seconds === undefined || seconds < minSeconds) {
      this.add(path, problem.pattern(value, `must be a duration of at least ${minSeconds}s written as <number><s|m|h>`, "1h"));
    }
  }
}

const ENV_KEYS = ["provider", "region", "size", "image", "sshKeys", "sshAllowedCidrs", "domain", "app", "volume", "backups", "drill"];
const APP_KEYS = ["repo", "ref", "port", "healthPath", "tasks", "env", "secrets", "privateRepo"];

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
  check.knownKeys(path, env, ENV_KEYS);

  const providerNames = Object.keys(PROVIDERS) as ProviderName[];
  const facts: ProviderFacts | undefined = check.oneOf(`${path}.provider`, env.provider, "a supported provider", providerNames)
    ? PROVIDERS[env.provider]
    : undefined;
  const size = env.size ?? facts?.defaultSize ?? "";
  const image = env.image ?? facts?.defaultImage ?? "";
  if (facts) {
    checkProviderValue(check, `${path}.region`, env.region, "region", facts);
    checkProviderValue(check, `${path}.size`, size, "size", facts);
    checkProviderValue(check, `${path}.image`, image, "image", facts);
    checkSizeInRegion(check, `${path}.size`, size, env.region, facts);
  }

  checkSshKeys(check, path, env);
  checkDomain(check, path, env);
  const app = resolveApp(check, `${path}.app`, env.app);

  const volumeSizeGiB = env.volume?.sizeGiB ?? DEFAULTS.volumeSizeGiB;
  if (env.volume !== undefined) check.knownKeys(`${path}.volume`, env.volume, ["sizeGiB"]);
  const volumeLimits = facts?.volumeSizeGiB ?? { min: 1, max: 16384 };
  check.integer(`${path}.volume.sizeGiB`, volumeSizeGiB, volumeLimits.min, volumeLimits.max);

  const backups = resolveBackups(check, `${path}.backups`, env);
  const drill = { onCalendar: env.drill?.onCalendar ?? DEFAULTS.drill.onCalendar, pingUrl: env.drill?.pingUrl };
  if (env.drill !== undefined) check.knownKeys(`${path}.drill`, env.drill, ["onCalendar", "pingUrl"]);
  check.onCalendar(`${path}.drill.onCalendar`, drill.onCalendar);
  if (drill.pingUrl !== undefined) {
    if (check.string(`${path}.drill.pingUrl`, drill.pingUrl, /^https:\/\/\S+$/, "must be an https:// URL", "https://hc-ping.com/<uuid>")) {
      check.envSafe(`${path}.drill.pingUrl`, drill.pingUrl, "percent-encode it as %27 in the URL");
    }
  }

  const names = {
    volume: `${id.prefix}-${id.client}-${id.environment}-data`,
    bucket: `${id.prefix}-${id.client}-${id.environment}-backups`,
    bucketPrefix: id.environment,
    iamUser: `${id.prefix}-${id.client}-${id.environment}-backup`,
    server: `${id.prefix}-${id.client}-${id.environment}`,
  };
  // S3 bucket names are at most 63 characters; DigitalOcean volume names 64.
  if (names.bucket.length > 63) check.add("slug", problem.tooLong(id.client, `the bucket name ${JSON.stringify(names.bucket)}`, 63));

  if (!facts || !app) return undefined;
  return {
    prefix: id.prefix,
    client: id.client,
    environment: id.environment,
    stackName: `${id.client}-${id.environment}`,
    sourceFile: id.sourceFile,
    provider: facts.name,
    region: env.region,
    size,
    image,
    sshKeys: env.sshKeys,
    sshAllowedCidrs: env.sshAllowedCidrs,
    domain: env.domain,
    app,
    volume: { sizeGiB: volumeSizeGiB },
    backups,
    drill,
    names,
  };
}

function checkProviderValue(
  check: Checker,
  path: string,
  value: unknown,
  field: "region" | "size" | "image",
  facts: ProviderFacts,
): void {
  const allowed = field === "region" ? facts.regions : field === "size" ? Object.keys(facts.sizes) : facts.images;
  if (typeof value === "string" && allowed.includes(value)) return;
  // Name the other provider when the value is one of its: the usual mistake after copying a client file.
  for (const other of Object.values(PROVIDERS)) {
    if (!other || other.name === facts.name || typeof value !== "string") continue;
    const otherAllowed = field === "region" ? other.regions : field === "size" ? Object.keys(other.sizes) : other.images;
    if (otherAllowed.includes(value)) {
      check.add(path, problem.wrongProviderValue(value, field, other.title, facts.title, allowed));
      return;
    }
  }
  const kind = field === "image" ? `an image the bootstrap is proven on (${facts.title})` : `a ${facts.title} ${field}`;
  check.add(path, problem.notOneOf(value, kind, allowed));
}

/** A size the provider sells only in some regions (Hetzner's CX line: EU only). */
function checkSizeInRegion(check: Checker, path: string, size: string, region: string, facts: ProviderFacts): void {
  const offeredIn = (name: string) => facts.sizeRegions?.[name]?.includes(region) ?? true;
  if (!facts.regions.includes(region) || !(size in facts.sizes) || offeredIn(size)) return;
  check.add(path, problem.notOneOf(size, `a ${facts.title} size offered in ${region}`, Object.keys(facts.sizes).filter(offeredIn)));
}

function checkSshKeys(check: Checker, path: string, env: EnvironmentConfig): void {
  if (!Array.isArray(env.sshKeys) || env.sshKeys.length === 0) {
    check.add(`${path}.sshKeys`, problem.empty("SSH key", 'add { name: "jane", publicKey: "ssh-ed25519 AAAA… jane@agency" }'));
  } else {
    env.sshKeys.forEach((key, i) => {
      check.string(`${path}.sshKeys[${i}].name`, key?.name, /^[A-Za-z0-9._@-]{1,64}$/, "must be 1–64 letters, digits or ._@-", "jane");
      if (typeof key?.publicKey !== "string" || !PUBLIC_KEY.test(key.publicKey.trim())) {
        check.add(`${path}.sshKeys[${i}].publicKey`, problem.invalidPublicKey(key?.publicKey));
      }
    });
  }
  if (!Array.isArray(env.sshAllowedCidrs) || env.sshAllowedCidrs.length === 0) {
    check.add(`${path}.sshAllowedCidrs`, problem.empty("CIDR", 'add your office or VPN address, e.g. "203.0.113.4/32"'));
  } else {
    env.sshAllowedCidrs.forEach((cidr, i) => {
      const at = `${path}.sshAllowedCidrs[${i}]`;
      const parsed = typeof cidr === "string" ? parseCidr(cidr) : undefined;
      if (!parsed) check.add(at, problem.invalidCidr(cidr));
      else if (parsed.bits === 0) check.add(at, problem.openToWorld(cidr));
      else if (parsed.bits < WIDEST_SSH_PREFIX[parsed.family]) {
        check.add(at, problem.tooWide(cidr, WIDEST_SSH_PREFIX[parsed.family], parsed.family === 4 ? "203.0.113.4/32" : "2001:db8::1/128"));
      }
    });
  }
}

function checkDomain(check: Checker, path: string, env: EnvironmentConfig): void {
  if (env.domain === undefined) return;
  check.knownKeys(`${path}.domain`, env.domain, ["name", "digitalOceanZone"]);
  const nameOk = check.string(`${path}.domain.name`, env.domain.name, HOSTNAME, "must be a lowercase host name", "app.acme.example");
  const zone = env.domain.digitalOceanZone;
  if (zone === undefined) return;
  if (check.string(`${path}.domain.digitalOceanZone`, zone, HOSTNAME, "must be a lowercase DNS zone", "acme.example") && nameOk) {
    if (env.domain.name !== zone && !env.domain.name.endsWith(`.${zone}`)) {
      check.add(`${path}.domain.digitalOceanZone`, problem.zoneMismatch(zone, env.domain.name));
    }
  }
}

function resolveApp(check: Checker, path: string, app: AppConfig | undefined): ResolvedEnvironment["app"] | undefined {
  if (typeof app !== "object" || app === null) {
    check.add(path, problem.missing("the app to run", 'set app: { repo: "https://github.com/agency/acme-app.git" }'));
    return undefined;
  }
  check.knownKeys(path, app, APP_KEYS);
  const resolved = {
    repo: app.repo,
    ref: app.ref ?? DEFAULTS.app.ref,
    port: app.port ?? DEFAULTS.app.port,
    healthPath: app.healthPath ?? DEFAULTS.app.healthPath,
    tasks: {
      migrate: app.tasks?.migrate ?? DEFAULTS.app.tasks.migrate,
      start: app.tasks?.start ?? DEFAULTS.app.tasks.start,
    },
    env: app.env ?? {},
    secrets: app.secrets ?? [],
    privateRepo: app.privateRepo ?? false,
  };
  checkRepo(check, `${path}.repo`, resolved.repo);
  check.string(`${path}.ref`, resolved.ref, GIT_REF, "must be a branch, tag or commit", "main");
  if (check.integer(`${path}.port`, resolved.port, 1024, 65000) && RESERVED_PORTS.some((p) => p === resolved.port || p === resolved.port + 1)) {
    check.add(`${path}.port`, problem.reserved(String(resolved.port), `the server uses ${RESERVED_PORTS.join(" and ")} (and the deploy script needs port + 1); pick e.g. 8000`));
  }
  check.string(`${path}.healthPath`, resolved.healthPath, /^\/[A-Za-z0-9._~\/-]*$/, "must be a URL path starting with /", "/healthz");
  if (app.tasks !== undefined) check.knownKeys(`${path}.tasks`, app.tasks, ["migrate", "start"]);
  check.string(`${path}.tasks.migrate`, resolved.tasks.migrate, TASK, "must be a deno task name", "migrate");
  check.string(`${path}.tasks.start`, resolved.tasks.start, TASK, "must be a deno task name", "start");
  for (const [key, value] of Object.entries(resolved.env)) {
    const at = `${path}.env.${key}`;
    if (!ENV_VAR.test(key)) check.add(at, problem.pattern(key, "is not an environment variable name (UPPER_SNAKE_CASE)", "LOG_LEVEL"));
    else if (RESERVED_ENV.includes(key)) check.add(at, problem.reserved(key, "the kit sets it for the app"));
    if (typeof value !== "string" || /[\n\r]/.test(value)) check.add(at, problem.pattern(value, "must be a one-line string", "info"));
    else check.envSafe(at, value, "remove it, or write a typographic apostrophe (’) instead");
  }
  resolved.secrets.forEach((name, i) => {
    const at = `${path}.secrets[${i}]`;
    if (check.string(at, name, ENV_VAR, "is not an environment variable name (UPPER_SNAKE_CASE)", "SESSION_SECRET")) {
      if (RESERVED_ENV.includes(name)) check.add(at, problem.reserved(name, "the kit sets it for the app"));
      else if (name in resolved.env) check.add(at, problem.reserved(name, "it is also in app.env; a value is either secret or not"));
    }
  });
  return resolved;
}

/** app.repo: a git URL the server can clone, with no credentials in it (they would be stored in plaintext). */
function checkRepo(check: Checker, path: string, repo: unknown): void {
  const credentials = typeof repo === "string" ? urlCredentials(repo) : undefined;
  if (credentials) {
    const sshUrl = credentials.host && credentials.path ? `git@${credentials.host}:${credentials.path}` : "git@github.com:agency/acme-app.git";
    check.add(path, problem.credentialsInUrl(credentials.shown, sshUrl));
  } else if (check.string(path, repo, GIT_URL, "must be a git URL over https or ssh", "https://github.com/agency/acme-app.git")) {
    check.envSafe(path, repo, "percent-encode it as %27 in the URL");
  }
}

function resolveBackups(check: Checker, path: string, env: EnvironmentConfig): ResolvedEnvironment["backups"] {
  const given = env.backups ?? {};
  const d = DEFAULTS.backups;
  check.knownKeys(path, given, ["region", "noncurrentVersionDays", "litestream", "fallback"]);
  if (given.litestream) check.knownKeys(`${path}.litestream`, given.litestream, ["syncInterval", "snapshotInterval", "retention"]);
  if (given.fallback) check.knownKeys(`${path}.fallback`, given.fallback, ["onCalendar", "keepDays"]);
  const backups = {
    region: given.region ?? d.region,
    noncurrentVersionDays: given.noncurrentVersionDays ?? d.noncurrentVersionDays,
    litestream: { ...d.litestream, ...given.litestream },
    fallback: { ...d.fallback, ...given.fallback },
  };
  check.oneOf(`${path}.region`, backups.region, "an AWS region", AWS_REGIONS);
  check.integer(`${path}.noncurrentVersionDays`, backups.noncurrentVersionDays, 1, 3650);
  const ls = backups.litestream;
  check.duration(`${path}.litestream.syncInterval`, ls.syncInterval, 1);
  check.duration(`${path}.litestream.snapshotInterval`, ls.snapshotInterval, 60);
  check.duration(`${path}.litestream.retention`, ls.retention, 3600);
  const retention = durationSeconds(ls.retention);
  const snapshot = durationSeconds(ls.snapshotInterval);
  if (retention !== undefined && snapshot !== undefined && retention < snapshot) {
    check.add(`${path}.litestream.retention`, problem.retentionBelowSnapshot(ls.retention, ls.snapshotInterval));
  }
  check.onCalendar(`${path}.fallback.onCalendar`, backups.fallback.onCalendar);
  check.integer(`${path}.fallback.keepDays`, backups.fallback.keepDays, 1, 365);
  return backups;
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
