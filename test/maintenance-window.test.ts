/**
 * The maintenance window (issue 13 point 4): maintenance.window / maintenance.autoReboot in the client file,
 * validated with clear errors, rendered into kit-maintenance-reboot.timer/.service and maintenance-reboot.sh,
 * declared once in SERVER_FILES (enabled at first boot and by every push). The reboot itself, under load, is
 * test/e2e/maintenance-reboot.e2e.test.ts; the script's shellcheck is test/cloud-init.test.ts's (every SCRIPTS entry).
 */
import { spawnSync } from "node:child_process";
import example from "../app/clients/example.ts";
import type { ClientConfig, EnvironmentConfig, ResolvedEnvironment } from "../app/config/types.ts";
import { LAYOUT } from "../cloud-init/layout.ts";
import { enabledNowUnits, MAINTENANCE_WAIT_SECONDS, SCRIPTS, SERVER_FILES, serverFiles, UNITS } from "../cloud-init/server-files.ts";
import { concreteServerValues, shippedEnvironment } from "../lab/environments.ts";
import { FILE, problemsOf } from "./support/problems.ts";

const validEnv: EnvironmentConfig = example.environments.prod;
const withMaintenance = (maintenance: Record<string, unknown>): ClientConfig => ({
  slug: "acme",
  environments: { prod: { ...validEnv, maintenance } as EnvironmentConfig },
});
const at = (path: string) => `${FILE}: environments.prod.maintenance.${path}: `;

/** The server files of `env` as they land, by path. */
const landed = (env: ResolvedEnvironment) => new Map(serverFiles(env, concreteServerValues(env)).map((f) => [f.path, f]));
const timerPath = `${LAYOUT.unitDir}/${LAYOUT.units.maintenanceRebootTimer}`;
const servicePath = `${LAYOUT.unitDir}/${LAYOUT.units.maintenanceReboot}`;
const scriptPath = `${LAYOUT.libDir}/maintenance-reboot.sh`;

describe("maintenance.window and maintenance.autoReboot (validation)", () => {
  test("defaults: Sundays 04:00 UTC, rebooting when an update requires it", () => {
    const env = shippedEnvironment("example-prod");
    expect(env.maintenance).toEqual({ window: "Sun 04:00", autoReboot: true });
  });

  test.each<[string, unknown, unknown]>([
    ["words systemd does not read", "Sunday 4am", "Sun 04:00"],
    ["a time past 23:59", "Sun 24:00", "Sun 23:30"],
    ["a weekday misspelt", "Sundy 04:00", "Sun 04:00"],
    ["a duration, not a time of day", "1h", "Sat,Sun 03:00"],
    ["not a string", 4, "*-*-* 04:00:00"],
  ])("window: %s is refused naming the path, the value and the forms that work; the nearest good value passes", (_what, bad, good) => {
    const problems = problemsOf(withMaintenance({ window: bad }));
    expect(problems).toEqual([`${at("window")}${JSON.stringify(bad)} is not a systemd OnCalendar expression: use a shorthand (daily, weekly, monthly, …) or "[weekday] YYYY-MM-DD HH:MM[:SS] [UTC]" with * for any, lists (a,b), ranges (a..b) and repetitions (start/step), in the server's time zone, UTC; e.g. "*-*-* 03:30:00", "Mon *-*-* 03:30 UTC"`]);
    expect(problemsOf(withMaintenance({ window: good }))).toEqual([]);
  });

  test("autoReboot takes true or false only", () => {
    expect(problemsOf(withMaintenance({ autoReboot: "yes" }))).toEqual([`${at("autoReboot")}"yes" must be true or false`]);
    expect(problemsOf(withMaintenance({ autoReboot: false }))).toEqual([]);
  });

  test("an unknown field in the section is named (a typo of window would otherwise be ignored)", () => {
    expect(problemsOf(withMaintenance({ windows: "Sun 04:00" }))).toEqual([expect.stringContaining(`${at("windows").replace(/: $/, "")}: unknown field "windows" — a typo? Known fields: window, autoReboot`)]);
  });

  test("the default window and every example above are accepted by systemd itself (systemd-analyze calendar)", () => {
    const values = ["Sun 04:00", "Sun 23:30", "Sat,Sun 03:00", "*-*-* 04:00:00"];
    const result = spawnSync("systemd-analyze", ["calendar", ...values], { encoding: "utf8", env: { ...process.env, TZ: "UTC" } });
    if (result.error) throw new Error(`systemd-analyze is required for this test (it is on dev machines and in CI): ${result.error.message}`);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    // "Sun 04:00" is normalized as systemd schedules it: every Sunday at 04:00 UTC.
    expect(result.stdout).toMatch(/Original form: Sun 04:00\n\s*Normalized form: Sun \*-\*-\* 04:00:00\n/);
  });
});

describe("the window on the server (rendered)", () => {
  const env = shippedEnvironment("example-prod");
  const files = landed(env);

  test("the timer fires at the window, is not caught up after downtime, and is enabled at first boot and by every push", () => {
    const timer = files.get(timerPath)!.content;
    expect(timer).toMatch(/^OnCalendar=Sun 04:00$/m);
    // Persistent=true would reboot at the first boot after a missed window: outside the window.
    expect(timer).toMatch(/^Persistent=false$/m);
    expect(timer).toMatch(/^WantedBy=timers\.target$/m);
    expect(UNITS[LAYOUT.units.maintenanceReboot]).toEqual({ by: "timer", timer: LAYOUT.units.maintenanceRebootTimer });
    expect(enabledNowUnits()).toContain(LAYOUT.units.maintenanceRebootTimer);
  });

  test("a client's own window and autoReboot reach the timer and the script", () => {
    const own = { ...env, maintenance: { window: "Sat,Sun 02:30", autoReboot: false } };
    const ownFiles = landed(own);
    expect(ownFiles.get(timerPath)!.content).toMatch(/^OnCalendar=Sat,Sun 02:30$/m);
    expect(ownFiles.get(scriptPath)!.content).toMatch(/^auto_reboot=false$/m);
    expect(files.get(scriptPath)!.content).toMatch(/^auto_reboot=true$/m);
  });

  test("the service runs the script once, with room for the hour it may wait", () => {
    const service = files.get(servicePath)!.content;
    expect(service).toMatch(new RegExp(`^ExecStart=${scriptPath}$`, "m"));
    expect(service).toMatch(/^Type=oneshot$/m);
    const timeout = Number(/^TimeoutStartSec=(\d+)$/m.exec(service)?.[1]);
    expect(timeout).toBeGreaterThan(MAINTENANCE_WAIT_SECONDS);
    // Not WantedBy anything: only the timer starts it (a boot must never reboot).
    expect(service).not.toContain("[Install]");
  });

  test("the script reboots only on Debian's reboot-required mark or a newer kernel, waits for busy work, and takes the deploy lock", () => {
    const script = files.get(scriptPath)!.content;
    expect(script).toContain(`if [ -e ${LAYOUT.rebootRequiredFile} ]; then`);
    for (const unit of [LAYOUT.units.fallbackBackup, LAYOUT.units.drill, LAYOUT.units.aptUpgrade]) expect(script).toContain(unit);
    expect(script).toContain(`mkdir ${LAYOUT.deployLock} 2>/dev/null`);
    expect(script).toContain(`deadline=$((SECONDS + ${MAINTENANCE_WAIT_SECONDS}))`);
    // The reboot is the script's last command, after the lock is taken.
    expect(script.trimEnd().split("\n").at(-1)).toBe("systemctl reboot");
    expect(script.indexOf("systemctl reboot")).toBeGreaterThan(script.indexOf(`mkdir ${LAYOUT.deployLock} 2>/dev/null`));
  });

  test("each file is declared once, in SERVER_FILES: units reload systemd on change, the script is read afresh", () => {
    for (const path of [timerPath, servicePath, scriptPath]) expect(SERVER_FILES.filter((f) => f.path === path)).toHaveLength(1);
    expect(SCRIPTS).toContain("maintenance-reboot.sh");
    expect(files.get(scriptPath)!.mode).toBe("0755");
    expect(files.get(timerPath)!.onChange).toEqual([{ kind: "daemon-reload" }]);
  });
});
