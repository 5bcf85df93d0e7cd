import { stringify } from "yaml";
import type { ResolvedEnvironment } from "../app/config/types";
import { LAYOUT } from "./layout";
import { type RenderOverrides, type ServerValues, serverFiles } from "./server-files";

export type { RenderOverrides, ServerValues } from "./server-files";

/** Debian packages the bootstrap needs beyond the cloud image (DigitalOcean's and Hetzner's Debian 12). */
export const PACKAGES = ["caddy", "git", "sqlite3", "curl", "ca-certificates", "unattended-upgrades", "tar", "gzip"];

export interface RenderOptions {
  /**
   * Base64-encodes secret file contents. Stacks pass `Fn.base64encode` (the secrets are Terraform
   * references, encoded at apply time); tests pass Buffer's encoder.
   */
  readonly base64: (content: string) => string;
  readonly overrides?: RenderOverrides;
}

/**
 * Renders the first-boot user data (`#cloud-config`) of a client environment. cloud-init only runs it on
 * the first boot of a server; later changes reach the server through scripts/deploy.ts, which pushes the
 * same files (`serverFiles`).
 */
export function renderUserData(env: ResolvedEnvironment, server: ServerValues, options: RenderOptions): string {
  const files = serverFiles(env, server, options.overrides);
  const config = {
    // Users: `deploy` logs in with keys only; `app` runs the app and owns the data, and cannot log in.
    users: [
      {
        name: LAYOUT.users.deploy,
        groups: ["sudo"],
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        shell: "/bin/bash",
        lock_passwd: true,
        ssh_authorized_keys: env.sshKeys.map((key) => key.publicKey.trim()),
      },
      {
        name: LAYOUT.users.app,
        system: true,
        shell: "/usr/sbin/nologin",
        homedir: "/nonexistent",
        no_create_home: true,
        lock_passwd: true,
      },
    ],
    disable_root: true,
    ssh_pwauth: false,
    timezone: "Etc/UTC",
    package_update: true,
    packages: PACKAGES,
    write_files: files.map((file) => ({
      path: file.path,
      owner: "root:root",
      permissions: file.mode,
      ...(file.secret ? { encoding: "b64", content: options.base64(file.content) } : { content: file.content }),
      ...(file.afterPackages ? { defer: true } : {}),
    })),
    // The bootstrap is a systemd unit so that its failure is visible in `systemctl --failed`; on failure its
    // log is also copied into /var/log/cloud-init-output.log.
    runcmd: [
      ["systemctl", "daemon-reload"],
      "systemctl start kit-bootstrap.service || { journalctl -u kit-bootstrap.service --no-pager -o cat | tail -n 40; exit 1; }",
    ],
  };
  const header =
    `#cloud-config\n` +
    `# First-boot bootstrap of ${env.stackName}, rendered by the kit from cloud-init/templates.\n` +
    `# Do not edit on the server: change the client file and run scripts/deploy.ts.\n`;
  return header + stringify(config, { lineWidth: 0, blockQuote: "literal" });
}
