import type { RunOptions, RunResult } from "./ssh.ts";
import type { Step } from "./shell.ts";

/** What runs Steps: the SSH runner (tests use the same runner against a loopback sshd). */
export interface Runner {
  readonly destination: string;
  run(step: Step, options?: RunOptions): Promise<RunResult>;
}

/** The server as `inspect` reports it. */
export interface ServerState {
  /** The slot Caddy proxies to. */
  readonly activePort: number;
  readonly appPort: number;
  readonly bootstrapDone: string;
  readonly dbExists: boolean;
  /** Release each slot points at ("" when none). */
  readonly slots: Readonly<Record<number, string>>;
  /** `systemctl is-active` of each slot's unit. */
  readonly units: Readonly<Record<number, string>>;
  /** Release directories, oldest first. */
  readonly releases: readonly string[];
  /** The deploy lock's owner note, "" when free. */
  readonly lock: string;
  readonly volumeDevice: string;
  readonly s3Endpoint: string;
  readonly drillUnit: boolean;
}

export function parseState(stdout: string): ServerState {
  const values = new Map<string, string>();
  const releases: string[] = [];
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i < 0) continue;
    const key = line.slice(0, i);
    const value = line.slice(i + 1).trim();
    if (key === "release") releases.push(value);
    else values.set(key, value);
  }
  const slots: Record<number, string> = {};
  const units: Record<number, string> = {};
  for (const [key, value] of values) {
    const slot = /^slot_(\d+)$/.exec(key);
    if (slot) slots[Number(slot[1])] = value;
    const unit = /^unit_(\d+)$/.exec(key);
    if (unit) units[Number(unit[1])] = value;
  }
  return {
    activePort: Number(values.get("active_port")),
    appPort: Number(values.get("app_port")),
    bootstrapDone: values.get("bootstrap_done") ?? "",
    dbExists: values.get("db_exists") === "yes",
    slots,
    units,
    releases: releases.sort(),
    lock: values.get("lock") ?? "",
    volumeDevice: values.get("volume_device") ?? "",
    s3Endpoint: values.get("s3_endpoint") ?? "",
    drillUnit: values.get("drill_unit") === "yes",
  };
}

/** The two slots: the configured port and the one above it. */
export const slotPorts = (appPort: number): [number, number] => [appPort, appPort + 1];
export const otherPort = (active: number, appPort: number): number => (active === appPort ? appPort + 1 : appPort);

/** The last line of a step's stdout (e.g. the path a step printed). */
export const lastLine = (stdout: string): string => stdout.trim().split("\n").pop() ?? "";

/** `key=value` lines of a step's stdout. */
export function keyValues(stdout: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) map.set(line.slice(0, i), line.slice(i + 1));
  }
  return map;
}
