/**
 * What a server file needs beyond being written, as data. Each file in server-files.ts declares its effects
 * next to its path; the first boot (bootstrap.sh) and every push (scripts/deploy.ts) assemble their commands
 * from those declarations, so a file cannot be added without saying what a change to it needs.
 */
import { LAYOUT } from "./layout.ts";

/** What a changed copy of a file needs on a running server. */
export type Effect =
  /** A unit file: systemd rereads its units. */
  | { readonly kind: "daemon-reload" }
  /** The unit rereads its configuration without a restart; `check` must pass first (a bad file never loads). */
  | { readonly kind: "reload"; readonly unit: string; readonly check?: string }
  /**
   * The unit restarts: at first boot a package's service started on its default file; on a push a oneshot that
   * loads its file (the deploy switch). `check` must pass first, as for a reload.
   */
  | { readonly kind: "restart"; readonly unit: string; readonly check?: string }
  /** The unit restarts when it is running (Litestream flushes its WAL on SIGTERM: nothing is lost). */
  | { readonly kind: "try-restart"; readonly unit: string }
  /** The app reads it when it starts: the next deploy applies it (deploy.ts says so). */
  | { readonly kind: "app-start" }
  /** Nothing to do; `why` says why that is right (read afresh by every run, every login, …). */
  | { readonly kind: "none"; readonly why: string };

export const daemonReload: Effect = { kind: "daemon-reload" };
export const appStart: Effect = { kind: "app-start" };
export const none = (why: string): Effect => ({ kind: "none", why });
export const reload = (unit: string, check?: string): Effect => ({ kind: "reload", unit, ...(check ? { check } : {}) });
export const restart = (unit: string, check?: string): Effect => ({ kind: "restart", unit, ...(check ? { check } : {}) });
export const tryRestart = (unit: string): Effect => ({ kind: "try-restart", unit });

/** How a systemd unit the kit ships comes to run. */
export type Activation =
  /** Started once by cloud-init's runcmd (the bootstrap itself). */
  | { readonly by: "cloud-init" }
  /** Enabled and started, in order, by a step of bootstrap.sh (restore before migrate before replicate). */
  | { readonly by: "bootstrap-step" }
  /** A oneshot that its timer starts. */
  | { readonly by: "timer"; readonly timer: string }
  /** Enabled and started at the bootstrap's last step, and kept so by every push (timers). */
  | { readonly by: "enabled-now" };

/** The shell command of an effect ("" for effects that need none on the server). */
export function effectCommand(effect: Effect): string {
  switch (effect.kind) {
    case "daemon-reload":
      return "systemctl daemon-reload";
    case "reload":
      return `${effect.check ? `${effect.check} && ` : ""}systemctl reload ${effect.unit}`;
    case "restart":
      return `${effect.check ? `${effect.check} && ` : ""}systemctl restart ${effect.unit}`;
    case "try-restart":
      return `systemctl try-restart ${effect.unit}`;
    case "app-start":
    case "none":
      return "";
  }
}

/**
 * Order in which a push runs the effects of what it changed: systemd rereads units before anything is
 * restarted, so a restarted service runs its new unit file.
 */
export function effectOrder(effect: Effect): number {
  return effect.kind === "daemon-reload" ? 0 : 1;
}

/** A directory the kit creates (first boot and every push). */
export interface Directory {
  readonly path: string;
  /** The kit.env variable that holds its path on the server (the scripts' view of the layout). */
  readonly variable: string;
  readonly owner: "app" | "root";
  readonly mode: "0750" | "0755";
  /** On the data volume: a push creates it only where the volume holds the database directory. */
  readonly onVolume: boolean;
}

const dir = (path: string, variable: string, owner: Directory["owner"]): Directory => ({
  path,
  variable,
  owner,
  mode: owner === "app" ? "0750" : "0755",
  onVolume: path.startsWith(`${LAYOUT.volumeMount}/`),
});

export const DIRECTORIES: readonly Directory[] = [
  dir(LAYOUT.dbDir, "DB_DIR", "app"),
  dir(LAYOUT.backupDir, "BACKUP_DIR", "app"),
  dir(LAYOUT.asideDir, "ASIDE_DIR", "app"),
  dir(LAYOUT.scratchDir, "SCRATCH_DIR", "app"),
  dir(LAYOUT.drillDir, "DRILL_DIR", "app"),
  dir(LAYOUT.releasesDir, "RELEASES_DIR", "root"),
  dir(LAYOUT.slotsDir, "SLOTS_DIR", "root"),
  dir(LAYOUT.stateDir, "STATE_DIR", "root"),
];

/** `install -d` lines for the directories, by kit.env variable, grouped by owner and mode. */
export function directoryCommands(directories: readonly Directory[]): string[] {
  const groups = new Map<string, Directory[]>();
  for (const d of directories) groups.set(`${d.owner} ${d.mode}`, [...(groups.get(`${d.owner} ${d.mode}`) ?? []), d]);
  return [...groups.values()].map((group) => {
    const { owner, mode } = group[0];
    const who = owner === "app" ? `-o "$APP_USER" -g "$APP_USER" ` : "";
    return `install -d ${who}-m ${mode} ${group.map((d) => `"$${d.variable}"`).join(" ")}`;
  });
}
