import { gzipSync } from "node:zlib";
import { stringify } from "yaml";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { LAYOUT } from "./layout.ts";
import { bundleScript } from "./bundle.ts";
import { type RenderOverrides, type ServerValues, serverFiles } from "./server-files.ts";

export type { RenderOverrides, ServerValues } from "./server-files.ts";

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
  // Secrets and files holding Terraform references are encoded at apply time, so they cannot be compressed
  // here: they and sshd's files (needed before sshd first starts) are entries of their own.
  const bundled = files.filter((file) => !file.early && !file.secret && !HAS_TOKEN.test(file.content));
  const ownEntries = files.filter((file) => !bundled.includes(file));
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
    // The hostname resolves locally (sudo otherwise warns "unable to resolve host" on images without it).
    manage_etc_hosts: true,
    package_update: true,
    packages: PACKAGES,
    write_files: [
      // Owned by root:root, cloud-init's default.
      ...ownEntries.map((file) => ({
        path: file.path,
        permissions: file.mode,
        ...(file.secret ? { encoding: "b64", content: options.base64(file.content) } : { content: file.content }),
        // After the packages (a package's config directory must not hold a file before its install).
        ...(file.early ? {} : { defer: true }),
      })),
      {
        path: LAYOUT.firstBootBundle,
        permissions: "0700",
        encoding: "gz+b64",
        content: gzipSync(bundleScript(env.stackName, bundled), { level: 9 }).toString("base64"),
      },
    ],
    // The bootstrap is a systemd unit so that its failure is visible in `systemctl --failed`; on failure its
    // log is also copied into /var/log/cloud-init-output.log.
    runcmd: [
      ["bash", LAYOUT.firstBootBundle],
      ["systemctl", "daemon-reload"],
      `systemctl start ${LAYOUT.units.bootstrap} || { journalctl -u ${LAYOUT.units.bootstrap} --no-pager -o cat | tail -n 40; exit 1; }`,
    ],
  };
  const header =
    `#cloud-config\n` +
    `# First boot of ${env.stackName}, rendered from cloud-init/templates (most files gzip'd in ${LAYOUT.firstBootBundle}).\n` +
    `# Do not edit on the server: change the client file and run scripts/deploy.ts.\n`;
  return header + stringify(config, { lineWidth: 0, blockQuote: "literal" });
}

/** Terraform references (cdktf tokens) can only be encoded at apply time, by Terraform itself. */
const HAS_TOKEN = /\$\{TfToken\[/;
