/** Runs the server's restore drill (the unit the monthly timer runs) and keeps its report here too. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { Later, Plan, say } from "./cli.ts";
import { OpsError } from "./errors.ts";
import * as steps from "./server-steps.ts";
import { lastLine, type Runner } from "./state.ts";
import { REPO_ROOT } from "./target.ts";

/** The JSON report restore-drill.sh writes. */
export interface DrillReport {
  readonly stack: string;
  readonly at: string;
  readonly ok: boolean;
  readonly replica: string;
  readonly sentinel: string;
  readonly integrity: string;
  /** Time until the sentinel was restorable from the replica (ms); null: it never was. */
  readonly rpo_ms: number | null;
  /** Wall time of the restore (ms). */
  readonly rto_ms: number | null;
  readonly missing_tables: number;
  readonly tables: readonly { name: string; live: number; restored: number | null }[];
  /** On PostgreSQL (pg-restore-drill.sh): the dump restored; `live` is then each table's rows at dump time. */
  readonly engine?: "postgres";
  readonly dump?: { readonly key: string; readonly bytes: number; readonly sha256: string };
}

export function summarize(r: DrillReport): string {
  const seconds = (ms: number | null) => (ms === null ? "—" : `${(ms / 1000).toFixed(1)} s`);
  const differ = r.tables.filter((t) => t.restored !== t.live);
  if (r.engine === "postgres") {
    return [
      `restore drill of ${r.stack} at ${r.at} (PostgreSQL, the daily dump): ${r.ok ? "PASSED" : "FAILED"}`,
      `  dump        ${r.replica}${r.dump ? ` (${(r.dump.bytes / 2 ** 20).toFixed(1)} MiB, sha256 ${r.dump.sha256.slice(0, 12)}…)` : ""}`,
      `  checks      ${r.integrity}`,
      `  dump age    ${seconds(r.rpo_ms)}  (what a restore from it would lose; the cluster's PITR loses far less)`,
      `  RTO         ${seconds(r.rto_ms)}  (pg_restore into the scratch database)`,
      `  tables      ${r.tables.length} checked against the dump's snapshot, ${r.missing_tables} missing${differ.length ? `, ${differ.length} with other row counts: ${differ.map((t) => `${t.name} ${t.restored}/${t.live}`).join(", ")}` : ""}`,
    ].join("\n");
  }
  return [
    `restore drill of ${r.stack} at ${r.at}: ${r.ok ? "PASSED" : "FAILED"}`,
    `  replica     ${r.replica}`,
    `  sentinel    ${r.rpo_ms === null ? "NOT in the restored copy (replication is not working)" : "found in the restored copy"}`,
    `  integrity   ${r.integrity}`,
    `  RPO         ${seconds(r.rpo_ms)}  (time until a write was restorable from S3)`,
    `  RTO         ${seconds(r.rto_ms)}  (restore wall time)`,
    `  tables      ${r.tables.length} checked, ${r.missing_tables} missing in the restore${differ.length ? `, ${differ.length} with other row counts (writes during the drill): ${differ.map((t) => `${t.name} ${t.restored}/${t.live}`).join(", ")}` : ""}`,
  ].join("\n");
}

export interface DrillOptions {
  /** Where the report is kept here. @default outputs/drills/<stack>-<time of the drill>.json */
  readonly reportFile?: string;
  /** Print the plan; connect to nothing, change nothing. */
  readonly dryRun?: boolean;
}

/**
 * The drill's plan: run the server's drill unit, keep its report here. A dry run prints it without
 * connecting (the drill's only read would be the drill itself).
 */
export async function drillRemote(runner: Runner, stackName: string, options: DrillOptions = {}): Promise<{ report?: DrillReport; file?: string }> {
  const plan = new Plan(`plan for ${stackName} on ${runner.destination}`, Boolean(options.dryRun));
  const file = new Later(`outputs/drills/${stackName}-<time of the drill>.json`);
  if (options.reportFile) file.set(options.reportFile);
  let report: DrillReport | undefined;
  const step = steps.runDrill();
  plan.add({
    title: `${step.title} on ${runner.destination} (on SQLite: writes a sentinel row into _kit_drill, restores the replica into ${LAYOUT.scratchDir}; on PostgreSQL: restores the newest daily dump into the scratch database <db>_drill)`,
    run: async () => {
      const result = await runner.run(step, { allowFailure: true });
      if (result.exitCode === 3) throw new OpsError(`${LAYOUT.units.drill} is not installed on ${runner.destination}`, `run a deploy once (it pushes the unit): npx zx scripts/deploy.ts ${stackName}`);
      try {
        report = JSON.parse(lastLine(result.stdout)) as DrillReport;
      } catch {
        throw new OpsError(`the drill wrote no report (exit ${result.exitCode})`, `see the lines above and: ssh ${runner.destination} sudo journalctl -u ${LAYOUT.units.drill}`);
      }
      if (!file.known) file.set(join(REPO_ROOT, "outputs", "drills", `${stackName}-${report.at}.json`));
    },
  });
  plan.add({
    title: `keep the report in ${options.reportFile ?? file.description} (and ${LAYOUT.drillDir}/drill-<time>.json on the server)`,
    run: async () => {
      mkdirSync(dirname(file.text), { recursive: true });
      writeFileSync(file.text, `${JSON.stringify(report, null, 2)}\n`);
    },
  });
  await plan.execute();
  if (!report) return {};
  say(`\n${summarize(report)}\n  report      ${file.text} (and ${LAYOUT.drillDir}/drill-${report.at}.json on the server)`);
  return { report, file: file.text };
}
