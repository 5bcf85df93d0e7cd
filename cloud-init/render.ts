import { stringify } from "yaml";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { LAYOUT } from "./layout.ts";
import { type FirstBootObject, firstBootObject } from "./bundle.ts";
import { type RenderOverrides, type ServerValues, serverFiles, templateValues } from "./server-files.ts";
import { renderTemplate, type TemplateValue } from "./template.ts";

export type { RenderOverrides, ServerValues } from "./server-files.ts";

/**
 * Debian packages the bootstrap needs beyond the cloud image (DigitalOcean's and Hetzner's Debian 13 and 12: the
 * same names on both). nftables is the deploy switch's (LAYOUT.upstreamRules): a no-op where the image has it.
 */
export const PACKAGES = ["caddy", "git", "sqlite3", "curl", "ca-certificates", "unattended-upgrades", "tar", "gzip", "nftables"];

export interface RenderOptions {
  /**
   * Base64-encodes secret file contents. Stacks pass `Fn.base64encode` (the secrets are Terraform
   * references, encoded at apply time); tests pass Buffer's encoder.
   */
  readonly base64: (content: string) => string;
  readonly overrides?: RenderOverrides;
}

/** The user data's fetcher of the first-boot bundle: a template of its own, in no server file (first boot only). */
export const FIRST_BOOT_FETCHER_TEMPLATE = "first-boot/fetch-server-files.sh";

/** How long the fetcher keeps trying S3 (a new IAM key takes seconds to be accepted everywhere). */
export const FIRST_BOOT_FETCH_SECONDS = 300;

/** A server's first boot: its user data, and the bundle object it downloads (which must be in the bucket first). */
export interface FirstBoot {
  readonly userData: string;
  readonly bundle: FirstBootObject;
}

/**
 * Renders the first boot of a client environment: the user data (`#cloud-config`) and the first-boot bundle
 * object. cloud-init only runs it on the first boot of a server; later changes reach the server through
 * scripts/deploy.ts, which pushes the same files (`serverFiles`).
 */
export function renderFirstBoot(env: ResolvedEnvironment, server: ServerValues, options: RenderOptions): FirstBoot {
  const files = serverFiles(env, server, options.overrides);
  // Secrets and files holding Terraform references are known only at apply time, and sshd's files are needed
  // before sshd first starts: those are entries of the user data. Everything else is in the bundle object.
  const bundled = files.filter((file) => !file.early && !file.secret && !HAS_TOKEN.test(file.content));
  const ownEntries = files.filter((file) => !bundled.includes(file));
  const bundle = firstBootObject(env.names.bucketPrefix, env.stackName, bundled);
  const fetcher = renderTemplate(FIRST_BOOT_FETCHER_TEMPLATE, fetcherValues(env, server, options.overrides, bundle));
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
      // Readable as it lands: what the server downloads, from where, and the hash it must have.
      { path: LAYOUT.firstBootFetcher, permissions: "0700", content: fetcher, defer: true },
    ],
    // runcmd's lines run one after another whatever each returns: each step stops the first boot itself.
    // The bootstrap is a systemd unit so that its failure is visible in `systemctl --failed`; on failure its
    // log is also copied into /var/log/cloud-init-output.log.
    runcmd: [
      `bash ${LAYOUT.firstBootFetcher} || exit 1`,
      `bash ${LAYOUT.firstBootBundle} || exit 1`,
      ["systemctl", "daemon-reload"],
      // --sync first: journald may not have stored the unit's last lines (its reason) when systemctl returns.
      `systemctl start ${LAYOUT.units.bootstrap} || { journalctl --sync; journalctl -u ${LAYOUT.units.bootstrap} --no-pager -o cat | tail -n 40; exit 1; }`,
    ],
  };
  const header =
    `#cloud-config\n` +
    `# First boot of ${env.stackName}, rendered from cloud-init/templates (most files in the bundle ${LAYOUT.firstBootFetcher} downloads).\n` +
    `# Do not edit on the server: change the client file and run scripts/deploy.ts.\n`;
  return { userData: header + stringify(config, { lineWidth: 0, blockQuote: "literal" }), bundle };
}

/** The fetcher's template values: the server's, and the object it must download. */
export function fetcherValues(env: ResolvedEnvironment, server: ServerValues, overrides: RenderOverrides | undefined, bundle: FirstBootObject): Record<string, TemplateValue> {
  return {
    ...templateValues(env, server, overrides),
    firstBootFetcher: LAYOUT.firstBootFetcher,
    firstBootBundle: LAYOUT.firstBootBundle,
    firstBootKey: bundle.key,
    firstBootSha256: bundle.sha256,
    firstBootFetchSeconds: FIRST_BOOT_FETCH_SECONDS,
  };
}

/** The user data alone (renderFirstBoot): for what only reads it. */
export function renderUserData(env: ResolvedEnvironment, server: ServerValues, options: RenderOptions): string {
  return renderFirstBoot(env, server, options).userData;
}

/** Terraform references (cdktf tokens) can only be encoded at apply time, by Terraform itself. */
const HAS_TOKEN = /\$\{TfToken\[/;
