/**
 * Every field of a client environment, declared once: its type, whether it is required, its default, its
 * check, and its documentation (the JSDoc on the declaration; editors show it on the client file's field).
 * The client file's types, the resolved environment's type, the known keys and the defaults are derived
 * from these declarations (./schema.ts); `app/clients/example.ts` mentions each field with its default
 * (test/config-fields.test.ts). Messages are built in ./errors.ts.
 *
 * Adding a field: declare it here (type, default, check, doc), use it (`env.<path>` is typed from here),
 * mention it in app/clients/example.ts, test its rule in test/config-validation.test.ts.
 */
import { isIP } from "node:net";
import { durationSeconds } from "./checker.ts";
import { problem } from "./errors.ts";
import { AWS_REGIONS, DIGITALOCEAN_POSTGRES, PROVIDERS, type ProviderFacts } from "./providers.ts";
import { field, section, type FieldContext } from "./schema.ts";
import { keyBlob, parsePublicKey } from "./ssh-key.ts";
import type { ProviderName, SshKey } from "./types.ts";

/** Environment variables the kit sets for the app itself. */
const RESERVED_ENV = ["DATABASE_URL", "PORT", "HOST", "DENO_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
/** Loopback ports the server already uses (Caddy admin, Caddy's upstream behind the deploy switch = LAYOUT.ports.upstream, Litestream metrics). */
const RESERVED_PORTS = [2019, 7999, 9090];

const ENV_VAR = /^[A-Z_][A-Z0-9_]*$/;
const TASK = /^[A-Za-z0-9][A-Za-z0-9:_-]*$/;
const GIT_REF = /^(?!-)(?!.*\.\.)[A-Za-z0-9._\/-]+$/;
const GIT_URL = /^(https:\/\/[^\s]+|ssh:\/\/[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$/;
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
/** A mailbox as people write it: no display name, no quoted or IP-literal forms (DigitalOcean mails it). */
const EMAIL = /^(?!\.)(?!.*\.\.)[A-Za-z0-9._%+-]+(?<!\.)@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;
const SLACK_CHANNEL = /^#?[a-z0-9][a-z0-9_-]{0,79}$/;

/** The providers by config name, for `provider`. */
export const PROVIDER_NAMES = Object.keys(PROVIDERS) as ProviderName[];

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

/**
 * The network a CIDR names, written as it should be ("203.0.113.0/24"); undefined when the address already is
 * the network (no host bits set).
 */
function networkOf(cidr: string, family: 4 | 6, bits: number): string | undefined {
  const [address] = cidr.split("/");
  const width = family === 4 ? 32 : 128;
  const value = family === 4 ? address.split(".").reduce((n, part) => (n << 8n) | BigInt(part), 0n) : ipv6Value(address);
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - bits)) - 1n);
  if ((value & mask) === value) return undefined;
  const network = value & mask;
  if (family === 4) return `${[24n, 16n, 8n, 0n].map((shift) => (network >> shift) & 255n).join(".")}/${bits}`;
  const groups = [...Array(8)].map((_, i) => ((network >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  // The longest run of zero groups (two or more) becomes "::", as RFC 5952 writes it.
  const zeros = groups.join(",").match(/\b0(,0)+\b/g)?.sort((a, b) => b.length - a.length)[0];
  const text = zeros ? `,${groups.join(",")},`.replace(`,${zeros},`, "::").replace(/^,|,$/g, "").replace(/,/g, ":") : groups.join(":");
  return `${text}/${bits}`;
}

/** An IPv6 address (node:net already accepted it) as a 128-bit number; a dotted IPv4 tail counts as two groups. */
function ipv6Value(address: string): bigint {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const hex = dotted ? address.slice(0, dotted.index) + [0, 2].map((i) => ((Number(dotted[i + 1]) << 8) | Number(dotted[i + 2])).toString(16)).join(":") : address;
  const [head, tail] = hex.split("::");
  const part = (s: string | undefined) => (s ? s.split(":") : []);
  const groups = tail === undefined ? part(head) : [...part(head), ...Array(8 - part(head).length - part(tail).length).fill("0"), ...part(tail)];
  return groups.reduce((n, g) => (n << 16n) | BigInt(`0x${g}`), 0n);
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

/** The ssh form of an https git URL (`https://github.com/a/b.git` → `git@github.com:a/b.git`). */
const sshFormOf = (url: string) => url.replace(/^https:\/\/([^/]+)\/(.*)$/, "git@$1:$2");

/** region, size, image: one of the provider's, naming the other provider when the value is one of its. */
function providerValue(kind: "region" | "size" | "image") {
  const allowedOf = (facts: ProviderFacts) => (kind === "region" ? facts.regions : kind === "size" ? Object.keys(facts.sizes) : facts.images);
  return (value: unknown, { check, path, facts }: FieldContext): boolean => {
    if (!facts) return false;
    const allowed = allowedOf(facts);
    if (typeof value === "string" && allowed.includes(value)) return true;
    // The usual mistake after copying a client file.
    for (const other of Object.values(PROVIDERS)) {
      if (!other || other.name === facts.name || typeof value !== "string") continue;
      if (allowedOf(other).includes(value)) {
        check.add(path, problem.wrongProviderValue(value, kind, other.title, facts.title, allowed));
        return false;
      }
    }
    const what = kind === "image" ? `an image the bootstrap is proven on (${facts.title})` : `a ${facts.title} ${kind}`;
    check.add(path, value === undefined ? problem.missing(what, `set one of ${allowed.join(", ")}`) : problem.notOneOf(value, what, allowed));
    return false;
  };
}

/** Lists `name` must not be empty: the field is then required. */
const nonEmpty = (value: unknown, at: FieldContext, what: string, fix: string): value is unknown[] => {
  if (Array.isArray(value) && value.length > 0) return true;
  at.check.add(at.path, value === undefined || Array.isArray(value) ? problem.empty(what, fix) : problem.notList(value, what, fix));
  return false;
};

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

const DOMAIN = {
  /** The site's host name, e.g. `app.acme.example`. Caddy obtains a certificate for it (automatic HTTPS). */
  name: field.required<string>((value, { check, path }) => {
    check.string(path, value, HOSTNAME, "must be a lowercase host name", "app.acme.example");
  }),
  /**
   * The DigitalOcean DNS zone that holds `name`, when the domain's DNS is hosted on DigitalOcean.
   * @default - no DNS records are created; point an A/AAAA record at the stack's `ipv4`/`ipv6` outputs yourself.
   */
  digitalOceanZone: field.optional<string>((zone, { check, path, siblings }) => {
    if (!check.string(path, zone, HOSTNAME, "must be a lowercase DNS zone", "acme.example")) return;
    const name = siblings.name;
    if (typeof name !== "string" || !HOSTNAME.test(name)) return;
    if (name !== zone && !name.endsWith(`.${zone}`)) check.add(path, problem.zoneMismatch(zone, name));
  }),
};

const TASKS = {
  /** The `deno task` that migrates the database, run before each release starts. */
  migrate: field.defaulted("migrate", (value, { check, path }) => {
    check.string(path, value, TASK, "must be a deno task name", "migrate");
  }),
  /** The `deno task` that starts the app. */
  start: field.defaulted("start", (value, { check, path }) => {
    check.string(path, value, TASK, "must be a deno task name", "start");
  }),
};

const APP = {
  /**
   * Git URL of the app (`https://…`, `ssh://…` or `git@host:path`). No credentials in it (they would be stored
   * in plaintext): for a private repo use the ssh form with `privateRepo: true`. No single quote (`%27`).
   */
  repo: field.required<string>((repo, { check, path }) => {
    const credentials = typeof repo === "string" ? urlCredentials(repo) : undefined;
    if (credentials) {
      const sshUrl = credentials.host && credentials.path ? `git@${credentials.host}:${credentials.path}` : "git@github.com:agency/acme-app.git";
      check.add(path, problem.credentialsInUrl(credentials.shown, sshUrl));
    } else if (check.string(path, repo, GIT_URL, "must be a git URL over https or ssh", "https://github.com/agency/acme-app.git")) {
      check.envSafe(path, repo, "percent-encode it as %27 in the URL");
    }
  }),
  /** Branch, tag or commit to deploy at first boot. */
  ref: field.defaulted("main", (value, { check, path }) => {
    check.string(path, value, GIT_REF, "must be a branch, tag or commit", "main");
  }),
  /**
   * Port the app listens on (loopback only; Caddy proxies to it). The deploy script also uses `port + 1`
   * to start a new release beside the old one.
   */
  port: field.defaulted(8000, (port, { check, path }) => {
    if (check.integer(path, port, 1024, 65000) && RESERVED_PORTS.some((p) => p === port || p === port + 1)) {
      check.add(path, problem.reserved(String(port), `the server uses ${RESERVED_PORTS.join(", ")} (and the deploy script needs port + 1); pick e.g. 8000`));
    }
  }),
  /** Path that answers 200 when the app is healthy. */
  healthPath: field.defaulted("/healthz", (value, { check, path }) => {
    check.string(path, value, /^\/[A-Za-z0-9._~\/-]*$/, "must be a URL path starting with /", "/healthz");
  }),
  /** `deno task` names. */
  tasks: section.defaulted(TASKS),
  /** Non-secret environment for the app (`/etc/app/app.env`). Values are one line, without a single quote. */
  env: field.defaulted<Readonly<Record<string, string>>>({}, (env, { check, path }) => {
    if (!isRecord(env)) return check.add(path, problem.notRecord(env, "variable names and one-line values", '{ LOG_LEVEL: "info" }'));
    for (const [key, value] of Object.entries(env)) {
      const at = `${path}.${key}`;
      if (!ENV_VAR.test(key)) check.add(at, problem.pattern(key, "is not an environment variable name (UPPER_SNAKE_CASE)", "LOG_LEVEL"));
      else if (RESERVED_ENV.includes(key)) check.add(at, problem.reserved(key, "the kit sets it for the app"));
      if (typeof value !== "string" || /[\n\r]/.test(value)) check.add(at, problem.pattern(value, "must be a one-line string", "info"));
      else check.envSafe(at, value, "remove it, or write a typographic apostrophe (’) instead");
    }
  }),
  /**
   * Names of secret environment variables. Their values never live in the repo or the synthesized
   * Terraform: each becomes a sensitive Terraform variable `secret_<NAME>` (set `TF_VAR_secret_<NAME>`
   * when deploying) and lands in `/etc/app/secrets.env` (0600).
   */
  secrets: field.defaulted<readonly string[]>([], (secrets, { check, path, siblings }) => {
    if (!Array.isArray(secrets)) return check.add(path, problem.notList(secrets, "variable name", 'secrets: ["SESSION_SECRET"]'));
    secrets.forEach((name: unknown, i) => {
      const at = `${path}[${i}]`;
      if (check.string(at, name, ENV_VAR, "is not an environment variable name (UPPER_SNAKE_CASE)", "SESSION_SECRET")) {
        if (RESERVED_ENV.includes(name)) check.add(at, problem.reserved(name, "the kit sets it for the app"));
        else if (isRecord(siblings.env) && name in siblings.env) check.add(at, problem.reserved(name, "it is also in app.env; a value is either secret or not"));
      }
    });
  }),
  /**
   * The repo is private: the stack takes an SSH deploy key (sensitive variable `git_deploy_key`, set
   * `TF_VAR_git_deploy_key`) that the server uses to clone.
   */
  privateRepo: field.defaulted(false, (value, { check, path, siblings }) => {
    if (!check.boolean(path, value) || typeof siblings.repo !== "string" || !GIT_URL.test(siblings.repo) || urlCredentials(siblings.repo)) return;
    // The deploy key is an SSH key: git uses it over ssh only, and an ssh URL clones with no key at all.
    const overSsh = !siblings.repo.startsWith("https://");
    if (value && !overSsh) check.add(path, problem.deployKeyNeedsSsh(siblings.repo, sshFormOf(siblings.repo)));
    if (!value && overSsh) check.add(path, problem.sshUrlNeedsKey(siblings.repo));
  }),
};

const VOLUME = {
  /**
   * Size in GiB. Can grow later, never shrink: growth is permanent on both clouds. The provider bounds it
   * (Hetzner: 10 GiB at least).
   */
  sizeGiB: field.defaulted(10, (value, { check, path, facts }) => {
    const limits = facts?.volumeSizeGiB ?? { min: 1, max: 16384 };
    check.integer(path, value, limits.min, limits.max);
  }),
};

const LITESTREAM = {
  /**
   * How often WAL changes are shipped to S3. A crash loses at most the writes of the last syncInterval
   * + 100 ms (Litestream's WAL check, `LITESTREAM_MONITOR_INTERVAL_MS`) and the upload in flight.
   */
  syncInterval: field.defaulted("1s", (value, { check, path }) => check.duration(path, value, 1)),
  /** How often a full snapshot is taken; bounds how much WAL a restore replays. */
  snapshotInterval: field.defaulted("1h", (value, { check, path }) => check.duration(path, value, 60)),
  /** How far back point-in-time restores reach. Must be ≥ snapshotInterval. */
  retention: field.defaulted("72h", (value, { check, path, siblings }) => {
    check.duration(path, value, 3600);
    const { snapshotInterval } = siblings;
    if (typeof value !== "string" || typeof snapshotInterval !== "string") return;
    const retention = durationSeconds(value);
    const snapshot = durationSeconds(snapshotInterval);
    if (retention !== undefined && snapshot !== undefined && retention < snapshot) {
      check.add(path, problem.retentionBelowSnapshot(value, snapshotInterval));
    }
  }),
};

const FALLBACK = {
  /**
   * systemd OnCalendar expression for the daily fallback copy (server time is UTC): a shorthand (`daily`, …) or
   * `[weekday] YYYY-MM-DD HH:MM[:SS] [UTC]` with `*`, lists, ranges (`..`) and repetitions (`/`).
   */
  onCalendar: field.defaulted("*-*-* 03:30:00", (value, { check, path }) => check.onCalendar(path, value)),
  /** Days of fallback copies kept on the volume and in the bucket. */
  keepDays: field.defaulted(7, (value, { check, path }) => {
    check.integer(path, value, 1, 365);
  }),
};

/** The backup IAM user's two access-key slots (AWS allows two keys per user). */
export const ACCESS_KEY_SLOTS = ["a", "b"] as const;
export type AccessKeySlot = (typeof ACCESS_KEY_SLOTS)[number];

const BACKUPS = {
  /** AWS region of the backup bucket. */
  region: field.defaulted("eu-central-1", (value, { check, path }) => {
    check.oneOf(path, value, "an AWS region", AWS_REGIONS);
  }),
  /** Days a replaced or deleted backup object is kept (bucket versioning). */
  noncurrentVersionDays: field.defaulted(30, (value, { check, path }) => {
    check.integer(path, value, 1, 3650);
  }),
  /** Continuous replication. */
  litestream: section.defaulted(LITESTREAM),
  /** Daily `sqlite3 .backup` copy, independent of Litestream. */
  fallback: section.defaulted(FALLBACK),
  /**
   * The backup IAM user's access keys, by slot, oldest first; servers use the last one. Rotating
   * (`scripts/rotate-keys.ts`, runbook "Rotating the backup key") adds the free slot (`["a", "b"]`), pushes its
   * key, proves replication with it, then drops the old slot (`["b"]`). Dropping a slot deletes its key.
   */
  accessKeys: field.defaulted<readonly AccessKeySlot[]>(["a"], (value, { check, path }) => {
    const slots = Array.isArray(value) ? (value as unknown[]) : [];
    const valid = slots.length >= 1 && slots.length <= 2 && new Set(slots).size === slots.length && slots.every((s) => ACCESS_KEY_SLOTS.includes(s as AccessKeySlot));
    if (!valid) check.add(path, problem.accessKeySlots(value));
  }),
};

const DRILL = {
  /** systemd OnCalendar expression for the on-server restore drill (same forms as the fallback's). */
  onCalendar: field.defaulted("monthly", (value, { check, path }) => check.onCalendar(path, value)),
  /**
   * https URL pinged (HTTP GET) after a passing drill: a dead-man switch such as healthchecks.io. No single quote (`%27`).
   * @default - no ping
   */
  pingUrl: field.optional<string>((value, { check, path }) => {
    if (check.string(path, value, /^https:\/\/\S+$/, "must be an https:// URL", "https://hc-ping.com/<uuid>")) {
      check.envSafe(path, value, "percent-encode it as %27 in the URL");
    }
  }),
};

/**
 * Whether one of the watcher's alert URLs is configured. The URL itself is a secret (a webhook URL grants
 * posting, a dead-man URL lets anyone report the server healthy): never in the client file, which is in git,
 * nor in the synthesized Terraform. The stack takes it as the sensitive variable `variable` (checked by
 * Terraform: https, one line, no spaces, quotes or backslashes) and writes it into /etc/kit/alerts.env (0600).
 * A client file that still holds a URL under the old names (deadManUrl, webhookUrl) is refused, without
 * echoing it (app/config/errors.ts: RETIRED_FIELDS).
 */
const alertConfigured = () =>
  field.defaulted(false, (value, { check, path }) => {
    check.boolean(path, value);
  });

/** The sensitive variables of the watcher's alert URLs (`TF_VAR_<name>`), by their `alerts` flag. */
export const ALERT_URL_VARIABLES = { deadMan: "alert_dead_man_url", webhook: "alert_webhook_url" } as const;

/** Where the watcher (kit-watch.timer, every minute) reports; see docs/runbook.md, "An alert fired". */
const ALERTS = {
  /**
   * A dead-man switch in the healthchecks.io style is configured: pinged (a POST with a one-line summary) after every
   * run that finds nothing critical, `<url>/fail` with the reasons after one that does; silence means the server is
   * down. Its URL is the sensitive variable `alert_dead_man_url` (set `TF_VAR_alert_dead_man_url`).
   */
  deadMan: alertConfigured(),
  /**
   * A webhook is configured: it receives a JSON POST with a Slack-compatible `text` on every change of state (problem
   * and recovery), at most 12 an hour; e.g. a Slack incoming webhook. Its URL is the sensitive variable
   * `alert_webhook_url` (set `TF_VAR_alert_webhook_url`).
   */
  webhook: alertConfigured(),
  /**
   * E-mail addresses that DigitalOcean's own alerts go to: the droplet's CPU, memory and root disk (monitor alerts)
   * and the health URL seen from outside (an uptime check). DigitalOcean only: Hetzner has no such alerts (there the
   * watcher and the dead-man URL are the signals), and the field is then unused.
   * @default - no e-mails
   */
  emails: field.defaulted<readonly string[]>([], (emails, { check, path }) => {
    if (!Array.isArray(emails)) return check.add(path, problem.notEmailList(emails));
    emails.forEach((email: unknown, i) => {
      const at = `${path}[${i}]`;
      if (!check.string(at, email, EMAIL, "is not an e-mail address", "ops@agency.example")) return;
      const first = emails.findIndex((e: unknown) => typeof e === "string" && e.toLowerCase() === email.toLowerCase());
      if (first !== i) check.add(at, problem.listedTwiceEmail(email, `${path}[${first}]`));
    });
  }),
  /**
   * Slack channel that DigitalOcean's own alerts also go to, e.g. `#ops`. Its incoming-webhook URL grants posting, so
   * it is a secret: the stack takes it as the sensitive variable `alert_slack_webhook_url` (set
   * `TF_VAR_alert_slack_webhook_url`), never from this file. DigitalOcean only, like `emails`.
   * @default - no Slack messages from DigitalOcean
   */
  slackChannel: field.optional<string>((value, { check, path }) => {
    check.string(path, value, SLACK_CHANNEL, "must be a Slack channel name (lowercase letters, digits, - and _, up to 80)", "#ops");
  }),
};

/**
 * When the server may reboot for updates (docs/runbook.md, "The maintenance window"). Unattended-upgrades installs
 * security updates daily; one that needs a reboot (a kernel, libc, systemd) waits for the window.
 */
const MAINTENANCE = {
  /**
   * systemd OnCalendar expression of the window's start, server time UTC (same forms as the fallback's). The
   * reboot happens at the start, or — while a deploy, the fallback backup, the drill or an apt run is busy — as soon
   * as it is done, within the hour; otherwise at the next window.
   */
  window: field.defaulted("Sun 04:00", (value, { check, path }) => check.onCalendar(path, value)),
  /** Reboot in the window when an update requires it. false: never reboot by itself (the watcher still reports it). */
  autoReboot: field.defaulted(true, (value, { check, path }) => {
    check.boolean(path, value);
  }),
};

/** Where the app's data lives: `DATABASE_URL`'s scheme tells the app which (docs/runbook.md, "A client outgrew SQLite"). */
export const DATABASE_ENGINES = ["sqlite", "postgres"] as const;
export type DatabaseEngine = (typeof DATABASE_ENGINES)[number];

/** A managed PostgreSQL value (size, version): one of the provider's; not checked where the provider has none (`engine` says so). */
const postgresValue = (kind: "size" | "version") => (value: unknown, { check, path, facts }: FieldContext) => {
  const offered = facts?.managedPostgres;
  if (!offered) return;
  const allowed = kind === "size" ? Object.keys(offered.sizes) : offered.versions;
  check.oneOf(path, value, `a ${facts.title} managed PostgreSQL ${kind}`, allowed);
};

/** The managed PostgreSQL cluster (`engine: "postgres"`): one node, in the environment's region. */
const POSTGRES = {
  /**
   * Cluster size slug; the smallest by default, `db-s-1vcpu-1gb` (1 vCPU, 1 GiB RAM, 10 GiB disk, $15 a month list
   * price). A change resizes the cluster in place (DigitalOcean moves it to new nodes; a short reconnect).
   */
  size: field.defaulted(DIGITALOCEAN_POSTGRES.defaultSize, postgresValue("size")),
  /**
   * PostgreSQL major version, pinned: 17 by default (Debian 13's pg_dump is 17, and pg_dump refuses a newer server).
   * Upgrading a major is DigitalOcean's in-place upgrade, done deliberately, with the servers' postgresql-client first.
   */
  version: field.defaulted(DIGITALOCEAN_POSTGRES.defaultVersion, postgresValue("version")),
};

const DATABASE = {
  /**
   * `"sqlite"`: the database is a file on the server's volume, replicated by Litestream (the kit's default).
   * `"postgres"`: the stack adds a managed PostgreSQL cluster (DigitalOcean only), its firewall (the environment's
   * servers only), the app's database and user; the connection string reaches the server through
   * /etc/kit/database.env, written by scripts/migrate-to-postgres.ts — never through the Terraform.
   */
  engine: field.defaulted<DatabaseEngine>("sqlite", (value, { check, path, facts }) => {
    if (!check.oneOf(path, value, "a database engine", DATABASE_ENGINES)) return;
    if (value === "postgres" && facts && !facts.managedPostgres) check.add(path, problem.noManagedPostgres(facts.title));
  }),
  /** The cluster, when `engine` is `"postgres"`. */
  postgres: section.defaulted(POSTGRES),
};

/** Most app servers behind one load balancer. */
export const MAX_SERVERS = 10;

/** One client environment: `environments.<name>` in a client file. */
export const ENVIRONMENT = {
  /** Cloud provider of the server. */
  provider: field.required<ProviderName>((value, { check, path }) => {
    check.oneOf(path, value, "a supported provider", PROVIDER_NAMES);
  }),
  /** Provider region, e.g. `fra1` (DigitalOcean). */
  region: field.required<string>(providerValue("region")),
  /**
   * Server size slug; the provider's default (`ProviderFacts.defaultSize`: `s-1vcpu-1gb`, `cx23`). A change
   * resizes the server in place (it restarts) and resizes CPU and RAM only: on both clouds a grown root disk is
   * permanent and would rule out ever going back to a smaller size, so the stacks keep the disk (DigitalOcean
   * `resize_disk = false`, Hetzner `keep_disk = true`). A server created at a bigger size has its bigger disk for good.
   */
  size: field.byProvider(
    (facts) => facts.defaultSize,
    (size, at) => {
      if (!providerValue("size")(size, at) || !at.facts) return;
      // A size the provider sells only in some regions (Hetzner's CX line: EU only).
      const { facts, siblings } = at;
      const region = siblings.region as string;
      const offeredIn = (name: string) => facts.sizeRegions?.[name]?.includes(region) ?? true;
      if (!facts.regions.includes(region) || offeredIn(size as string)) return;
      at.check.add(at.path, problem.notOneOf(size, `a ${facts.title} size offered in ${region}`, Object.keys(facts.sizes).filter(offeredIn)));
    },
  ),
  /**
   * OS image; the provider's default (Debian 13: debian-13-x64 on DigitalOcean, debian-13 on Hetzner). The
   * bootstrap is proven on Debian 13 and Debian 12, both booted in the e2e tier; pin Debian 12 only to match
   * existing servers.
   */
  image: field.byProvider((facts) => facts.defaultImage, providerValue("image")),
  /** Keys allowed to log in as the `deploy` user. At least one. */
  sshKeys: field.required<readonly SshKey[]>((keys, at) => {
    if (!nonEmpty(keys, at, "SSH key", 'add { name: "jane", publicKey: "ssh-ed25519 AAAA… jane@agency" }')) return;
    const names = new Map<string, number>();
    const blobs = new Map<string, number>();
    (keys as unknown[]).forEach((key, i) => {
      const path = `${at.path}[${i}]`;
      if (typeof key !== "object" || key === null || Array.isArray(key)) {
        at.check.add(path, problem.notObject(key, ["name", "publicKey"]));
        return;
      }
      at.check.knownKeys(path, key, ["name", "publicKey"]);
      const { name, publicKey } = key as Partial<Record<keyof SshKey, unknown>>;
      if (at.check.string(`${path}.name`, name, /^[A-Za-z0-9._@-]{1,64}$/, "must be 1–64 letters, digits or ._@-", "jane")) {
        // The name is what the key is registered under in the DigitalOcean account or Hetzner project.
        const first = names.get(name);
        if (first === undefined) names.set(name, i);
        else at.check.add(`${path}.name`, problem.duplicateKeyName(name, `${at.path}[${first}]`));
      }
      const parsed = typeof publicKey === "string" ? parsePublicKey(publicKey) : undefined;
      if (!parsed?.ok) {
        at.check.add(`${path}.publicKey`, problem.badPublicKey(publicKey, parsed));
        return;
      }
      const first = blobs.get(keyBlob(publicKey as string));
      if (first === undefined) blobs.set(keyBlob(publicKey as string), i);
      else at.check.add(`${path}.publicKey`, problem.duplicateKey(`${at.path}[${first}]`));
    });
  }),
  /**
   * CIDRs allowed to reach SSH (port 22). At least one; the whole internet is refused, and so is any range wider
   * than /8 (IPv4) or /16 (IPv6).
   */
  sshAllowedCidrs: field.required<readonly string[]>((cidrs, at) => {
    if (!nonEmpty(cidrs, at, "CIDR", 'add your office or VPN address, e.g. "203.0.113.4/32"')) return;
    cidrs.forEach((cidr, i) => {
      const path = `${at.path}[${i}]`;
      const parsed = typeof cidr === "string" ? parseCidr(cidr) : undefined;
      if (!parsed) at.check.add(path, problem.invalidCidr(cidr));
      else if (parsed.bits === 0) at.check.add(path, problem.openToWorld(cidr as string));
      else if (parsed.bits < WIDEST_SSH_PREFIX[parsed.family]) {
        at.check.add(path, problem.tooWide(cidr as string, WIDEST_SSH_PREFIX[parsed.family], parsed.family === 4 ? "203.0.113.4/32" : "2001:db8::1/128"));
      } else {
        const network = networkOf(cidr as string, parsed.family, parsed.bits);
        const [address] = (cidr as string).split("/");
        if (network) at.check.add(path, problem.hostBits(cidr as string, network, `${address}/${parsed.family === 4 ? 32 : 128}`));
        else if (cidrs.indexOf(cidr) !== i) at.check.add(path, problem.listedTwice(cidr as string, `${at.path}[${cidrs.indexOf(cidr)}]`));
      }
    });
  }),
  /** @default - no domain: Caddy serves plain HTTP on the server's address */
  domain: section.optional(DOMAIN),
  /** The app the server runs. */
  app: section.required(APP, { what: "the app to run", fix: 'set app: { repo: "https://github.com/agency/acme-app.git" }' }),
  /** The persistent data volume. */
  volume: section.defaulted(VOLUME),
  /** Where and how the database is backed up. */
  backups: section.defaulted(BACKUPS),
  /** The on-server restore drill. */
  drill: section.defaulted(DRILL),
  /** Where the server's watcher sends its alerts. */
  alerts: section.defaulted(ALERTS),
  /** Reboots for updates. */
  maintenance: section.defaulted(MAINTENANCE),
  /** The app's database. */
  database: section.defaulted(DATABASE),
  /**
   * How many app servers, 1 to 10. More than one needs `database.engine: "postgres"` (SQLite lives on one server's
   * volume): the servers then sit behind a load balancer that health-checks `app.healthPath` through Caddy, and
   * deploys go server by server. The stack's `ipv4` stays the first server; `server_ipv4s` lists them all.
   */
  servers: field.defaulted(1, (value, { check, path, facts, siblings }) => {
    if (!check.integer(path, value, 1, MAX_SERVERS) || value === 1) return;
    const engine = (siblings.database as { engine?: unknown } | undefined)?.engine;
    if (engine !== "postgres") return check.add(path, problem.serversNeedPostgres(value as number, facts?.managedPostgres ? undefined : facts?.title));
    // The load balancer terminates TLS with a certificate DigitalOcean obtains through its own DNS (stacks/load-balancer.ts).
    const domain = siblings.domain as { name?: unknown; digitalOceanZone?: unknown } | undefined;
    if (domain && typeof domain.name === "string" && domain.digitalOceanZone === undefined) check.add(path, problem.loadBalancerNeedsZone(value as number, domain.name));
  }),
};
