import { gzipSync } from "node:zlib";
import { stringify } from "yaml";
import type { ResolvedEnvironment } from "../app/config/types";
import { LAYOUT } from "./layout";
import { type RenderOverrides, type ServerFile, type ServerValues, serverFiles } from "./server-files";

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
    // The hostname resolves locally (sudo otherwise warns "unable to resolve host" on images without it).
    manage_etc_hosts: true,
    package_update: true,
    packages: PACKAGES,
    write_files: files.map((file) => ({
      path: file.path,
      owner: "root:root",
      permissions: file.mode,
      ...encodeContent(file, options),
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
    `# Scripts are gzip+base64 here (Hetzner caps user data at 32 KiB): read them in cloud-init/templates/scripts.\n` +
    `# Do not edit on the server: change the client file and run scripts/deploy.ts.\n`;
  return header + stringify(config, { lineWidth: 0, blockQuote: "literal" });
}

/** Terraform references (cdktf tokens) can only be encoded at apply time, by Terraform itself. */
const HAS_TOKEN = /\$\{TfToken\[/;

/**
 * How a file's content goes into write_files: secrets base64-encoded by `options.base64` (at apply time in a
 * stack); scripts gzip'd (they hold no Terraform references, so they can be compressed here); the rest as
 * plain text, readable in the user data.
 */
function encodeContent(file: ServerFile, options: RenderOptions): { content: string; encoding?: string } {
  if (file.secret) return { encoding: "b64", content: options.base64(file.content) };
  if (file.path.startsWith(`${LAYOUT.libDir}/`)) {
    if (HAS_TOKEN.test(file.content)) throw new Error(`${file.path}: a script must not contain Terraform references`);
    return { encoding: "gz+b64", content: gzipSync(file.content, { level: 9 }).toString("base64") };
  }
  return { content: file.content };
}
