/**
 * A change across several app servers behind a load balancer (`servers` > 1), one server at a time, with no
 * failed user request: server k is drained (LAYOUT.lbDrainFile: its Caddy answers 503 on the LB's health path
 * only), the rollout waits until the LB's health check has taken it out of rotation, changes it (deploy.ts's
 * one-server deploy or rollback, which health-checks the new release and rolls itself back on failure),
 * undrains it, checks its health path answers 200 again, waits until the LB sends to it again, then the next.
 * A failure on server k stops there: k is back on its release (its own rollback) and in rotation, the servers
 * after it untouched; the report says which server runs which release.
 */
import { drainWaitSeconds, type HealthCheck, LB_HEALTH_CHECK, lbHealthPath, undrainWaitSeconds } from "../../cloud-init/load-balancer.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { envFileLines } from "../../cloud-init/server-files.ts";
import { say, stepLine } from "./cli.ts";
import { OpsError } from "./errors.ts";
import { Secret } from "./secret.ts";
import { bash, type Step, step } from "./shell.ts";
import type { Runner } from "./state.ts";
import type { Target } from "./target.ts";

/** One server of the rollout. */
export interface RolloutServer {
  /** 1 = the first of server_ipv4s. */
  readonly number: number;
  readonly target: Target;
  readonly runner: Runner;
}

/** What the rollout does to each server; deploy.ts passes deploy() or rollbackOne() for one server. */
export interface ServerChange {
  /** What it is, for the plan: "deploy of main". */
  readonly what: string;
  /** Read-only (it also runs in a dry run): the release the server serves now. */
  current(server: RolloutServer): Promise<string>;
  /**
   * Changes one server and returns the release it serves afterwards; on failure rolls that server back
   * itself and throws. `first` is true for the first server only (the migration runs there: the servers share
   * PostgreSQL).
   */
  apply(server: RolloutServer, first: boolean): Promise<string>;
  /** What the dry run shows per server (its own plan); nothing may change. */
  plan(server: RolloutServer, first: boolean): Promise<void>;
}

export interface RolloutOptions {
  readonly env: ResolvedEnvironment;
  readonly servers: readonly RolloutServer[];
  readonly change: ServerChange;
  /** The load balancer's address, for the messages. */
  readonly loadBalancer?: string;
  readonly dryRun?: boolean;
  /** The LB's health check (the waits derive from it). @default LB_HEALTH_CHECK */
  readonly check?: HealthCheck;
  /** @default setTimeout */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Per server: what it served before and what it serves now. */
export interface ServerOutcome {
  readonly number: number;
  readonly address: string;
  readonly before: string;
  readonly after: string;
  readonly state: "changed" | "rolled back" | "untouched";
  /** Seconds from drain to back in rotation (changed or rolled back servers). */
  readonly seconds?: number;
}

/** The health path through the server's own Caddy (as the LB asks it): prints the HTTP status code. */
export function lbHealthStatus(healthPath: string): Step {
  return step(
    `ask Caddy for ${healthPath} as the load balancer does`,
    bash`code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${LAYOUT.ports.http}${healthPath} || true)
echo "drained=$([ -e ${LAYOUT.lbDrainFile} ] && echo yes || echo no)"
echo "status=\${code:-000}"`,
    true,
  );
}

/** Takes the server out of the LB's rotation: its health path answers 503 from now on (checked). */
export function drain(healthPath: string): Step {
  return step(
    `drain: create ${LAYOUT.lbDrainFile} (Caddy answers 503 on ${healthPath}; user requests still pass)`,
    bash`touch ${LAYOUT.lbDrainFile}
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${LAYOUT.ports.http}${healthPath} || true)
if [ "$code" != 503 ]; then rm -f ${LAYOUT.lbDrainFile}; echo "Caddy answers $code on ${healthPath} with ${LAYOUT.lbDrainFile} present, not 503: its Caddyfile has no @drained (deploy --config-only first)" >&2; exit 1; fi`,
  );
}

/** Puts the server back: removes the drain file, then its health path must answer 200 within `seconds`. */
export function undrain(healthPath: string, seconds = 10): Step {
  return step(
    `undrain: remove ${LAYOUT.lbDrainFile}; ${healthPath} answers 200`,
    bash`rm -f ${LAYOUT.lbDrainFile}
for _ in $(seq 1 ${seconds}); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${LAYOUT.ports.http}${healthPath} || true)
  if [ "$code" = 200 ]; then exit 0; fi
  sleep 1
done
echo "${healthPath} answers $code through Caddy, not 200: the load balancer keeps this server out of rotation" >&2
exit 1`,
  );
}

const parseStatus = (stdout: string) => ({
  drained: /^drained=yes$/m.test(stdout),
  status: /^status=(\d+)$/m.exec(stdout)?.[1] ?? "000",
});

/**
 * Puts the cluster's connection (the outputs' database_url, database_drill_url, database_ca_certificate) where
 * a server runs on PostgreSQL: where /etc/kit/database.env already exists (kept in step with the outputs), and
 * on every server after the first, which never holds SQLite data. The first server gets it from
 * migrate-to-postgres.ts only: written there before the migration it would start the app on an empty
 * database. A first boot waiting for it (restore-on-boot.sh on server 2..N) then finishes its bootstrap.
 */
export function databaseEnvStep(database: NonNullable<Target["database"]>, waitSeconds = 300): Step {
  const content = new Secret(
    envFileLines({ DATABASE_URL: database.url.reveal(), PGSSLROOTCERT: LAYOUT.postgresCaFile, ...(database.drillUrl ? { DRILL_DATABASE_URL: database.drillUrl.reveal() } : {}) }),
  );
  return step(
    `database.env: the cluster's URL and CA where the server runs on PostgreSQL (or is server 2 or later)`,
    bash`. ${LAYOUT.kitEnvFile}
if [ ! -e "$DATABASE_ENV_FILE" ] && [ "\${SERVER_INDEX:-1}" -le 1 ]; then
  echo "kit: $DATABASE_ENV_FILE not written: this server runs on SQLite until scripts/migrate-to-postgres.ts moves it" >&2
  exit 0
fi
umask 077
env_new=$(mktemp) ca_new=$(mktemp)
trap 'rm -f "$env_new" "$ca_new"' EXIT
printf '%s' ${content} >"$env_new"
printf '%s\n' ${database.caCertificate.trim()} >"$ca_new"
changed=""
if ! cmp -s "$ca_new" ${LAYOUT.postgresCaFile}; then install -m 0644 -o root -g root "$ca_new" ${LAYOUT.postgresCaFile}; changed="$changed ${LAYOUT.postgresCaFile}"; fi
if ! cmp -s "$env_new" "$DATABASE_ENV_FILE"; then install -m 0600 -o root -g root "$env_new" "$DATABASE_ENV_FILE"; changed="$changed $DATABASE_ENV_FILE"; fi
if [ -n "$changed" ]; then echo "kit: updated$changed (the app reads them when it starts)" >&2; else echo "kit: $DATABASE_ENV_FILE already up to date" >&2; fi
if [ ! -e "$BOOTSTRAP_DONE_FILE" ]; then
  echo "kit: the first boot waits for it: waiting up to ${waitSeconds} s for the bootstrap to finish" >&2
  for _ in $(seq 1 ${waitSeconds}); do [ -e "$BOOTSTRAP_DONE_FILE" ] && exit 0; sleep 1; done
  echo "kit: the bootstrap has not finished after ${waitSeconds} s: sudo journalctl -u ${LAYOUT.units.bootstrap}" >&2
  exit 1
fi`,
  );
}

/** Which server runs which release, one line each. */
export function releaseTable(outcomes: readonly ServerOutcome[]): string {
  return outcomes
    .map((o) => {
      const where = `server ${o.number} (${o.address})`;
      if (o.state === "changed") return `${where}: ${o.after}  (was ${o.before || "?"}${o.seconds === undefined ? "" : `; out of rotation ${o.seconds.toFixed(1)} s`})`;
      if (o.state === "rolled back") return `${where}: ${o.after || o.before || "?"}  (rolled back: the change failed here)`;
      return `${where}: ${o.before || "?"}  (untouched)`;
    })
    .join("\n  ");
}

/** Runs `change` on every server, one at a time, behind the LB (see the file's comment). */
export async function rollout(options: RolloutOptions): Promise<ServerOutcome[]> {
  const { env, servers, change } = options;
  const check = options.check ?? LB_HEALTH_CHECK;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const path = lbHealthPath(env);
  const out = drainWaitSeconds(check);
  const back = undrainWaitSeconds(check);
  const behind = options.loadBalancer ? `the load balancer ${options.loadBalancer}` : "the load balancer";
  say(`rollout (${change.what}) across ${servers.length} servers of ${env.stackName} behind ${behind}, one at a time, in this order:`);
  servers.forEach((s, i) =>
    say(
      `  ${s.number}. ${s.runner.destination}: drain (${path} answers 503), wait ${out} s for the LB to stop sending, ${change.what}` +
        `${i === 0 ? " (with the migration: the servers share PostgreSQL, it runs once, here)" : " (no migration: it ran on the first server)"}` +
        `, undrain, wait ${back} s for the LB to send again`,
    ),
  );
  say(`  the waits follow the LB's health check (every ${check.intervalSeconds} s, timeout ${check.timeoutSeconds} s, out after ${check.unhealthyThreshold} failed, in after ${check.healthyThreshold} passed)`);
  say(`  on a failure: that server goes back to its release and into rotation, the ones after it are not touched`);

  // Read-only, also in a dry run: what each serves, and that each is in rotation (else draining one could leave none).
  const before: string[] = [];
  const problems: string[] = [];
  for (const s of servers) {
    stepLine(`read server ${s.number} (${s.runner.destination})`);
    before.push(await change.current(s));
    const { drained, status } = parseStatus((await s.runner.run(lbHealthStatus(path))).stdout);
    if (drained) say(`  server ${s.number} is drained (left by an interrupted rollout): it is put back in its turn`);
    else if (status !== "200") problems.push(`server ${s.number} (${s.runner.destination}) answers ${status} on ${path}: the LB already sends it nothing`);
  }
  if (problems.length) {
    throw new OpsError(
      `not every server is healthy, so taking one out of rotation could leave the site with none:\n  ${problems.join("\n  ")}`,
      `repair it first (ssh ${servers[0].runner.destination} sudo journalctl -u caddy -u 'app@*'), or change that one server alone: --server N`,
    );
  }
  if (options.dryRun) {
    for (const [i, s] of servers.entries()) {
      say(`\n── server ${s.number} of ${servers.length}: ${s.runner.destination} (serves ${before[i] || "?"}) ──`);
      await change.plan(s, i === 0);
    }
    return servers.map((s, i) => ({ number: s.number, address: s.runner.destination, before: before[i], after: before[i], state: "untouched" }));
  }

  const outcomes: ServerOutcome[] = servers.map((s, i) => ({ number: s.number, address: s.runner.destination, before: before[i], after: before[i], state: "untouched" }));
  for (const [i, s] of servers.entries()) {
    say(`\n── server ${s.number} of ${servers.length}: ${s.runner.destination} ──`);
    const started = Date.now();
    stepLine(drain(path).title);
    await s.runner.run(drain(path)).catch((error: Error) => {
      throw stopped(outcomes, `draining server ${s.number} failed: ${error.message}`, s, path);
    });
    stepLine(`wait ${out} s: the LB's health check takes server ${s.number} out of rotation`);
    await sleep(out * 1000);
    let failure: Error | undefined;
    let release = before[i];
    try {
      release = await change.apply(s, i === 0);
    } catch (error) {
      failure = error as Error;
    }
    stepLine(undrain(path).title);
    const backIn = await s.runner.run(undrain(path)).then(
      () => undefined,
      (error: Error) => error,
    );
    if (!backIn) {
      stepLine(`wait ${back} s: the LB's health check puts server ${s.number} back in rotation`);
      await sleep(back * 1000);
    }
    const seconds = (Date.now() - started) / 1000;
    outcomes[i] = failure ? { ...outcomes[i], state: "rolled back", seconds } : { ...outcomes[i], after: release, state: "changed", seconds };
    if (failure || backIn) {
      const reasons = [failure ? `${change.what} failed on server ${s.number}: ${failure.message}` : "", backIn ? `server ${s.number} is not back in rotation: ${backIn.message}` : ""].filter(Boolean);
      throw stopped(outcomes, reasons.join("\n  "), s, path);
    }
    say(`✓ server ${s.number} (${s.runner.destination}) serves ${release}, back in rotation (${seconds.toFixed(1)} s out)`);
  }
  say(`✓ rollout done: every server serves the new release:\n  ${releaseTable(outcomes)}`);
  return outcomes;
}

function stopped(outcomes: readonly ServerOutcome[], reason: string, at: RolloutServer, path: string): OpsError {
  const left = outcomes.filter((o) => o.state === "untouched").map((o) => o.number);
  return new OpsError(
    `the rollout stopped: ${reason}\n  which server runs which release now:\n  ${releaseTable(outcomes)}`,
    `${left.length ? `servers ${left.join(", ")} were not touched. ` : ""}Fix the cause above and run the rollout again (servers already on the new release are deployed again, harmlessly)` +
      `, or go on by hand with --server N. If server ${at.number} stays out of rotation: ssh ${at.runner.destination} sudo rm -f ${LAYOUT.lbDrainFile} (then ${path} must answer 200).`,
  );
}
