/**
 * What `scripts/upgrade.ts` would change on a server, decided from what the server reports (its binaries'
 * versions, the sha256 its kit.env says they were installed from, which server files differ) and what the kit
 * ships now (cloud-init/artifacts.ts, the rendered SERVER_FILES). Pure: no server is contacted here; the
 * tests feed it facts and read its lines and the fleet table.
 */
import { type Artifact, DENO, LITESTREAM } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { RenderOverrides, ServerFile } from "../../cloud-init/server-files.ts";

/** What the server runs of one artifact. */
export interface Installed {
  /** The version the binary itself reports ("" when it is missing or does not run). */
  readonly version: string;
  /** The tarball sha256 the server's kit.env pins (what it was installed from). */
  readonly sha256: string;
}

export type ArtifactChangeKind = "unchanged" | "version" | "rebuild";

export interface ArtifactChange {
  /** What the kit ships now (with the render overrides' URL: a mirror). */
  readonly to: Artifact;
  readonly from: Installed;
  /** `version`: another version; `rebuild`: the same version from another tarball (sha256). */
  readonly kind: ArtifactChangeKind;
}

/** What the read-only step found on the server (upgrade-steps.ts readFacts). */
export interface ServerFacts {
  readonly installed: Readonly<Record<string, Installed>>;
  /** Server files (paths) whose content differs from the kit's rendering, or that are missing. */
  readonly changedFiles: readonly string[];
  /** Security updates apt would install from the package lists as they are on the server (null: unknown). */
  readonly securityUpdates: number | null;
}

export interface UpgradePlan {
  readonly stack: string;
  readonly artifacts: readonly ArtifactChange[];
  readonly changedFiles: readonly string[];
  /** Litestream is restarted (SIGTERM: it flushes its WAL) because its binary changes. */
  readonly restartLitestream: boolean;
  /** Why the app is restarted blue/green (empty: it is not). */
  readonly appRestart: readonly string[];
  readonly securityUpdates: number | null;
  readonly osUpdates: boolean;
}

/** The artifacts the kit ships, with the download URL (and, for tests, the hash) of the render overrides. */
export function shippedArtifacts(overrides: RenderOverrides = {}): Artifact[] {
  return [
    { ...DENO, ...overrides.artifacts?.deno },
    { ...LITESTREAM, ...overrides.artifacts?.litestream },
  ];
}

/** `deno 2.9.6` (deno -V), `v0.3.13` (litestream version) → `2.9.6`, `0.3.13`. */
export function binaryVersion(output: string): string {
  const match = /(\d+\.\d+\.\d+[0-9A-Za-z.+-]*)/.exec(output.trim().split("\n")[0] ?? "");
  return match ? match[1] : "";
}

export function artifactChange(to: Artifact, from: Installed): ArtifactChange {
  const kind: ArtifactChangeKind = from.version !== to.version ? "version" : from.sha256 !== to.sha256 ? "rebuild" : "unchanged";
  return { to, from, kind };
}

/** Files whose change the app only sees when it starts: their change is a reason to restart it. */
export function readAtAppStart(files: readonly ServerFile[]): string[] {
  return files.filter((f) => f.onChange.some((e) => e.kind === "app-start") || f.path === `${LAYOUT.unitDir}/${LAYOUT.units.app}`).map((f) => f.path);
}

export function planUpgrade(stack: string, facts: ServerFacts, shipped: readonly Artifact[], files: readonly ServerFile[], osUpdates: boolean): UpgradePlan {
  const artifacts = shipped.map((a) => artifactChange(a, facts.installed[a.name] ?? { version: "", sha256: "" }));
  const changed = (name: string) => artifacts.some((a) => a.to.name === name && a.kind !== "unchanged");
  const atStart = readAtAppStart(files);
  const appRestart = [
    ...(changed(DENO.name) ? [`${DENO.name} changes`] : []),
    ...facts.changedFiles.filter((path) => atStart.includes(path)).map((path) => `${path} changes`),
  ];
  return {
    stack,
    artifacts,
    changedFiles: facts.changedFiles,
    restartLitestream: changed(LITESTREAM.name),
    appRestart,
    securityUpdates: facts.securityUpdates,
    osUpdates,
  };
}

/** Whether the plan changes anything of the kit's (binaries, files); OS updates aside. */
export const changesKit = (plan: UpgradePlan): boolean => plan.artifacts.some((a) => a.kind !== "unchanged") || plan.changedFiles.length > 0;

/** `deno 2.9.5 → 2.9.6`, `litestream 0.3.13 (unchanged)`, `litestream 0.3.13 → 0.3.13 (another build: sha256 c462… → 9f1a…)`. */
export function describeArtifact(change: ArtifactChange): string {
  const { to, from, kind } = change;
  const was = from.version || "not installed";
  if (kind === "unchanged") return `${to.name} ${to.version} (unchanged)`;
  if (kind === "rebuild") return `${to.name} ${was} → ${to.version} (another build: sha256 ${from.sha256.slice(0, 12) || "?"}… → ${to.sha256.slice(0, 12)}…)`;
  return `${to.name} ${was} → ${to.version}`;
}

/** The one-cell summary of the fleet table. */
export function fromTo(plan: UpgradePlan): string {
  const parts = plan.artifacts.map((a) => (a.kind === "unchanged" ? `${a.to.name} ${a.to.version}` : `${a.to.name} ${a.from.version || "none"} → ${a.to.version}`));
  if (plan.changedFiles.length) parts.push(`${plan.changedFiles.length} file${plan.changedFiles.length === 1 ? "" : "s"}`);
  return parts.join(", ");
}

/** What a dry run prints for one server: versions from → to, files, restarts, OS updates. */
export function describePlan(plan: UpgradePlan): string[] {
  const lines = [`${plan.stack}: what the upgrade would change`];
  for (const a of plan.artifacts) lines.push(`  ${describeArtifact(a)}`);
  if (plan.changedFiles.length) {
    lines.push(`  ${plan.changedFiles.length === 1 ? "1 server file differs" : `${plan.changedFiles.length} server files differ`} from the kit's:`);
    for (const path of plan.changedFiles) lines.push(`    ${path}`);
  } else {
    lines.push("  server files: all as the kit renders them");
  }
  lines.push(plan.restartLitestream ? "  Litestream: restarted on the new binary (SIGTERM: it uploads its pending WAL first)" : "  Litestream: not restarted (its binary does not change)");
  lines.push(plan.appRestart.length ? `  app: restarted blue/green on the other slot (${plan.appRestart.join(", ")})` : "  app: not restarted (neither Deno nor what it reads at start changes)");
  if (!plan.osUpdates) lines.push("  OS updates: skipped (--skip-os-updates)");
  else if (plan.securityUpdates === null) lines.push("  OS updates: unattended-upgrade runs (pending security updates unknown: no package lists on the server)");
  else lines.push(`  OS updates: unattended-upgrade runs (${plan.securityUpdates} security update${plan.securityUpdates === 1 ? "" : "s"} pending in the package lists as they are now; apt-get update may find more)`);
  return lines;
}

/** One server's line of the fleet table. */
export interface UpgradeRow {
  readonly stack: string;
  readonly fromTo: string;
  readonly result: string;
  readonly seconds: number | null;
}

/** The fleet table: server, from → to, result, duration; aligned columns. */
export function formatUpgradeTable(rows: readonly UpgradeRow[]): string {
  const header = ["server", "from → to", "result", "duration"];
  const cells = rows.map((r) => [r.stack, r.fromTo || "-", r.result, r.seconds === null ? "-" : `${r.seconds.toFixed(1)} s`]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: readonly string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n");
}
