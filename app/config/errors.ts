import { KEY_TYPES, MIN_RSA_BITS, type ParsedKey } from "./ssh-key.ts";

/**
 * Every configuration problem the kit reports, in one place. Each message says what is wrong with the
 * value and how to fix it; `ConfigProblem.toString()` prefixes the client file and the field's path:
 *
 *   app/clients/acme.ts: environments.prod.region: "fra9" is not a DigitalOcean region (fra1, ams3, …)
 */
export class ConfigProblem {
  readonly file: string;
  readonly path: string;
  readonly message: string;
  constructor(
    file: string,
    path: string,
    message: string,
  ) {
    this.file = file;
    this.path = path;
    this.message = message;
  }

  toString(): string {
    return `${this.file}: ${this.path}: ${this.message}`;
  }
}

/** Thrown once per synth with every problem found in every client file. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super(
      `${problems.length} problem${problems.length === 1 ? "" : "s"} in the client configuration ` +
        `(no stack was written):\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.problems = problems;
    this.name = "ConfigError";
  }
}

/** Fields the kit no longer takes, with what to write instead (said in place of "unknown field"). */
const RETIRED_FIELDS: Readonly<Record<string, string>> = {
  // alerts: the URLs are secrets now (app/config/fields.ts: ALERT_URL_VARIABLES).
  deadManUrl: alertUrlInFile("deadMan", "alert_dead_man_url"),
  webhookUrl: alertUrlInFile("webhook", "alert_webhook_url"),
};

function alertUrlInFile(flag: string, variable: string): string {
  return `holds an alert URL, which is a secret: remove it from the client file (it is in git and would be in cdk.tf.json). Fix: ${flag}: true here, and the URL in TF_VAR_${variable} when you run cdktf deploy`;
}

const show = (value: unknown): string => {
  if (value === undefined) return "(missing)";
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
};

const list = (values: readonly string[], max = 6): string =>
  values.length <= max ? values.join(", ") : `${values.slice(0, max).join(", ")}, …`;

/** Message builders, one per rule. */
export const problem = {
  missing: (what: string, fix: string) => `is required: ${what}. Fix: ${fix}`,
  isNull: (fix: string) => `null is not a value here. Fix: ${fix}`,
  notList: (value: unknown, what: string, fix: string) => `${show(value)} must be a list of ${what}s. Fix: ${fix}`,
  notRecord: (value: unknown, what: string, example: string) => `${show(value)} must be an object of ${what} (for example ${example})`,
  notBoolean: (value: unknown) => `${show(value)} must be true or false`,
  notObject: (value: unknown, known: readonly string[]) =>
    `${show(value)} must be an object with the fields ${list(known, 12)}; see app/clients/example.ts`,
  notInteger: (value: unknown, min: number, max: number) =>
    `${show(value)} must be a whole number from ${min} to ${max}`,
  pattern: (value: unknown, rule: string, example: string) =>
    `${show(value)} ${rule} (for example ${JSON.stringify(example)})`,
  notOneOf: (value: unknown, kind: string, allowed: readonly string[]) =>
    `${show(value)} is not ${kind} (${list(allowed)})`,
  empty: (what: string, fix: string) => `must list at least one ${what}. Fix: ${fix}`,
  unknownKey: (key: string, known: readonly string[]) =>
    RETIRED_FIELDS[key] ?? `unknown field ${JSON.stringify(key)} — a typo? Known fields: ${list(known, 12)}`,
  tooLong: (value: string, derived: string, max: number) =>
    `${show(value)} makes ${derived} longer than ${max} characters; choose a shorter one`,
  openToWorld: (value: string) =>
    `${show(value)} opens SSH to the whole internet; list your office or VPN addresses instead (e.g. "203.0.113.4/32")`,
  tooWide: (value: string, widest: number, example: string) =>
    `${show(value)} is far wider than an office or VPN (at most /${widest}); list the addresses you connect from, e.g. ${JSON.stringify(example)}`,
  hostBits: (value: string, network: string, single: string) =>
    `${show(value)} has host bits set, so it is not clear what it allows: the network is ${show(network)}. Fix: write ${show(network)} for the whole range, or ${show(single)} for that one address`,
  listedTwice: (value: string, first: string) => `${show(value)} is already listed at ${first}; list each range once`,
  notEmailList: (value: unknown) => `${show(value)} must be a list of e-mail addresses. Fix: emails: ["ops@agency.example"]`,
  listedTwiceEmail: (value: string, first: string) => `${show(value)} is already listed at ${first}; list each address once`,
  deployKeyNeedsSsh: (repo: string, sshUrl: string) =>
    `true, but app.repo ${show(repo)} is an https URL, and the deploy key (TF_VAR_git_deploy_key) is an SSH key, which git uses over ssh only. ` +
    `Fix: repo ${JSON.stringify(sshUrl)}, or privateRepo: false for a public repository`,
  sshUrlNeedsKey: (repo: string) =>
    `false, but app.repo ${show(repo)} is an ssh URL, and the server has no key to clone over ssh with. ` +
    `Fix: privateRepo: true (the server clones with TF_VAR_git_deploy_key), or the repository's https URL if it is public`,
  duplicateDomain: (name: string, first: string) =>
    `${show(name)} is already the domain of ${first}: two servers cannot both answer for it (and Caddy's certificate). Fix: give this environment its own name, e.g. ${JSON.stringify(`staging.${name}`)}`,
  invalidCidr: (value: unknown) =>
    `${show(value)} is not a CIDR; write an address with its prefix length, e.g. "203.0.113.4/32" or "2001:db8::/48"`,
  invalidPublicKey: (value: unknown) =>
    `${show(value)} is not an OpenSSH public key line; paste the whole .pub file content ("ssh-ed25519 AAAA… name")`,
  /** Why `parsePublicKey` (./ssh-key.ts) refused the line; undefined: it is not a string. */
  badPublicKey: (value: unknown, parsed: Extract<ParsedKey, { ok: false }> | undefined): string => {
    const fixCopy = "paste the .pub file's line again, unedited (cat ~/.ssh/id_ed25519.pub)";
    switch (parsed?.why) {
      case undefined:
      case "shape":
        return problem.invalidPublicKey(value);
      case "type":
        return `${show(value)} starts with ${show(parsed.label)}, not a key type the kit accepts (${KEY_TYPES.join(", ")}). Fix: make a key with ssh-keygen -t ed25519`;
      case "base64":
      case "blob":
        return `${show(value)} does not decode to a whole ${parsed.label} key (a character lost or added in copying?). Fix: ${fixCopy}`;
      case "mismatch":
        return `${show(value)} is labelled ${parsed.label}, but the key in it is ${show(parsed.inside)}. Fix: ${fixCopy}`;
      case "weak":
        return `${show(value)} is a ${parsed.bits}-bit RSA key; the kit takes RSA keys of at least ${MIN_RSA_BITS} bits. Fix: make a new key (ssh-keygen -t ed25519) and list that one`;
    }
  },
  duplicateKeyName: (name: string, first: string) =>
    `${show(name)} is already the name of ${first}; give each key its own name (the name it is registered under in the DigitalOcean account or Hetzner project)`,
  duplicateKey: (first: string) => `is the same key as ${first}; list each key once, under one name`,
  singleQuote: (value: unknown, fix: string) =>
    `${show(value)} contains a single quote ('), which the server's environment files cannot hold. Fix: ${fix}`,
  /** `shown` must already have the credentials replaced by `***`: the real ones are never printed. */
  credentialsInUrl: (shown: string, sshUrl: string) =>
    `${show(shown)} has credentials in it; they would be stored in plaintext in the synthesized Terraform and on ` +
    `the server. Fix: remove them and clone with a deploy key: repo ${JSON.stringify(sshUrl)} with privateRepo: true ` +
    `(the key comes from TF_VAR_git_deploy_key)`,
  notCalendar: (value: unknown) =>
    `${show(value)} is not a systemd OnCalendar expression: use a shorthand (daily, weekly, monthly, …) or ` +
    `"[weekday] YYYY-MM-DD HH:MM[:SS] [UTC]" with * for any, lists (a,b), ranges (a..b) and repetitions (start/step), ` +
    `in the server's time zone, UTC; e.g. "*-*-* 03:30:00", "Mon *-*-* 03:30 UTC"`,
  reserved: (value: string, why: string) => `${show(value)} is reserved: ${why}`,
  retentionBelowSnapshot: (retention: string, snapshot: string) =>
    `${show(retention)} is shorter than snapshotInterval ${show(snapshot)}: Litestream would delete the only ` +
    `snapshot a restore starts from. Fix: make retention at least the snapshot interval (e.g. "72h")`,
  zoneMismatch: (zone: string, name: string) =>
    `${show(zone)} does not contain the domain ${show(name)}; set it to the zone the name is in, or remove it`,
  accessKeySlots: (value: unknown) =>
    `${show(value)} must list one or two access-key slots, "a" and/or "b", oldest first: ["a"] (or ["b"]) normally, ` +
    `["a", "b"] (or ["b", "a"]) while rotating (see scripts/rotate-keys.ts)`,
  volumeShrink: (size: number, deployed: number, outputsFile: string) =>
    `${size} is smaller than the deployed volume (${deployed} GiB, ${outputsFile}): volumes can grow but never shrink, ` +
    `on DigitalOcean and Hetzner alike. Fix: set it back to ${deployed} or more (for a smaller volume, restore into a new ` +
    `environment and retire this one)`,
  noClientsDir: (what: string) =>
    `${what}. Fix: point KIT_CLIENTS_DIR (or a script's --clients-dir) at the directory of client files, or leave it unset for app/clients`,
  noClientFiles: (dir: string) =>
    `holds no client file (<slug>.ts), so there is nothing to synthesize. Fix: copy app/clients/example.ts to ${dir}/<slug>.ts and edit it`,
  wrongKindOfFile: (name: string) =>
    `${show(name)} is not read: client files are TypeScript modules, <slug>.ts, exporting a ClientConfig as default. ` +
    `Fix: rewrite it as ${JSON.stringify(name.replace(/\.[^.]+$/, ".ts"))} (see app/clients/example.ts), or prefix its name with _ if it is not a client`,
  unreadableClientFile: (reason: string) =>
    `cannot be loaded: ${reason}. Fix: correct the file (npx tsc -p . names the line), or compare it with app/clients/example.ts`,
  duplicate: (value: string, where: string) => `${show(value)} is already used by ${where}; slugs must be unique`,
  noManagedPostgres: (provider: string) =>
    `"postgres" is not available on ${provider}: it has no managed PostgreSQL. Fix: stay on SQLite (engine: "sqlite", ` +
    `the default), or move the environment to DigitalOcean (provider: "digitalocean"), which has managed PostgreSQL`,
  /** `provider`: the environment's provider when it has no managed PostgreSQL. */
  serversNeedPostgres: (servers: number, provider: string | undefined) =>
    `${servers} servers need database.engine "postgres": SQLite lives on one server's volume, which a second server cannot share. ` +
    (provider
      ? `${provider} has no managed PostgreSQL. Fix: servers: 1, or move the environment to DigitalOcean with database: { engine: "postgres" }`
      : `Fix: servers: 1, or first move the environment to PostgreSQL (database: { engine: "postgres" }, then scripts/migrate-to-postgres.ts) and raise servers after`),
  loadBalancerNeedsZone: (servers: number, name: string) =>
    `${servers} servers sit behind a load balancer, which terminates TLS with a Let's Encrypt certificate DigitalOcean ` +
    `obtains through its own DNS, so the domain ${show(name)} needs domain.digitalOceanZone. Fix: move the domain's zone to ` +
    `DigitalOcean and set digitalOceanZone, or servers: 1 (Caddy on the one server gets the certificate itself)`,
  wrongProviderValue: (value: string, field: string, otherProvider: string, provider: string, allowed: readonly string[]) =>
    `${show(value)} is a ${otherProvider} ${field}, but this environment's provider is ${provider}; use one of ${list(allowed)}`,
};
