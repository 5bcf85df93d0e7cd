/**
 * The watcher (cloud-init/watch/watch.sh) on a local kit, as test/watch.int.test.ts and the watcher's cost
 * benchmark run it: the template rendered with the kit's values, its state under a temp dir, systemd's
 * answers from test/support/systemctl-stand-in.sh (no systemd here; the e2e tier has the real one), the
 * repo's pinned Deno and Litestream, and "Caddy" being a loopback port the caller serves (health path,
 * alert receiver, or both).
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResolvedEnvironment } from "../../app/config/types.ts";
import { renderTemplate } from "../../cloud-init/template.ts";
import { REPO_ROOT } from "../environments.ts";
import { DENO, LITESTREAM_DIR, LocalKit, type S3Access } from "./local-kit.ts";

export const SYSTEMCTL_STAND_IN = join(REPO_ROOT, "test", "support", "systemctl-stand-in.sh");

export interface WatchKit {
  readonly kit: LocalKit;
  /** The temp dir of the watcher's state (watch/), the stand-in's answers (systemctl/) and its bin/. */
  readonly aux: string;
  /** The rendered watch.sh in the kit's libDir. */
  readonly script: string;
  /** The environment kit-watch.service gives the script (its EnvironmentFiles: s3.env, alerts.env), as of now. */
  readonly env: NodeJS.ProcessEnv;
  /** What the stand-in systemctl answers for `name` (ActiveState, Result, LastTriggerUSec). */
  unit(name: string, props: Record<string, string>): void;
  /** Every unit the watcher asks about, as on a healthy server. */
  healthyUnits(): void;
  cleanup(): Promise<void>;
}

export interface WatchKitOptions {
  /** The loopback port "Caddy" answers the health path on (plain HTTP, no domain). */
  readonly httpPort: number;
  /** alerts.env: the dead-man and webhook URLs (unset: no alerts are sent). */
  readonly alerts?: { readonly deadManUrl?: string; readonly webhookUrl?: string };
  /** Template values for this kit beyond the watcher's own (e.g. dbFile of a seeded database). */
  readonly extra?: Record<string, string | number>;
}

export function startWatchKit(access: S3Access, environment: ResolvedEnvironment, options: WatchKitOptions): WatchKit {
  const aux = mkdtempSync(join(tmpdir(), "kit-watch-"));
  const at = (name: string) => join(aux, name);
  for (const d of ["watch", "systemctl", "stand-in", "bin"]) mkdirSync(at(d));
  copyFileSync(SYSTEMCTL_STAND_IN, at("stand-in/systemctl"));
  symlinkSync(join(LITESTREAM_DIR, "litestream"), at("bin/litestream"));
  symlinkSync(DENO, at("bin/deno"));
  const kit = new LocalKit(access, environment, {
    watchDir: at("watch"),
    watchVerdictFile: at("watch/verdict.json"),
    watchHistoryFile: at("watch/history.jsonl"),
    // "Caddy" is the caller's server, without a domain (the certificate has its own test).
    domainName: "",
    httpPort: options.httpPort,
    binDir: at("bin"),
    caddyfile: at("Caddyfile"),
    ...options.extra,
  });
  const script = join(kit.path("libDir"), "watch.sh");
  writeFileSync(script, renderTemplate("../watch/watch.sh", kit.values), { mode: 0o755 });
  writeFileSync(at("Caddyfile"), `:80 {\n\treverse_proxy 127.0.0.1:${environment.app.port}\n}\n`);
  symlinkSync("/srv/app/releases/20261203T100000Z-abc1234", join(kit.path("slotsDir"), String(environment.app.port)));
  const unit = (name: string, props: Record<string, string>) =>
    writeFileSync(join(at("systemctl"), name), Object.entries(props).map(([k, v]) => `${k}=${v}\n`).join(""));
  const healthyUnits = () => {
    unit("litestream.service", { ActiveState: "active" });
    unit("fallback-backup.service", { ActiveState: "inactive", Result: "success" });
    unit("fallback-backup.timer", { ActiveState: "active", LastTriggerUSec: "" });
    unit("restore-drill.service", { ActiveState: "inactive", Result: "success" });
    unit("restore-drill.timer", { ActiveState: "active", LastTriggerUSec: "" });
  };
  healthyUnits();
  const alerts = options.alerts ?? {};
  return {
    kit,
    aux,
    script,
    // Read at each run: a rotation changes kit.env's key pair (as it changes the unit's s3.env).
    get env() {
      return {
        ...kit.env,
        PATH: `${at("stand-in")}:${kit.env.PATH}`,
        SYSTEMCTL_STATE: at("systemctl"),
        ...(alerts.deadManUrl ? { ALERT_DEAD_MAN_URL: alerts.deadManUrl } : {}),
        ...(alerts.webhookUrl ? { ALERT_WEBHOOK_URL: alerts.webhookUrl } : {}),
      };
    },
    unit,
    healthyUnits,
    async cleanup() {
      await kit.cleanup();
      rmSync(aux, { recursive: true, force: true });
    },
  };
}

