import type { ClientConfig } from "../config/types.ts";

/**
 * The example client on Hetzner Cloud: the same kit, bootstrap and S3 backups as `example.ts`, with the
 * server on Hetzner. Only the provider fields differ; `example.ts` documents every other field.
 *
 * Deploy with HCLOUD_TOKEN (a read/write API token of the client's Hetzner project) and the AWS credentials
 * for the backup bucket. Synth needs neither.
 */
const exampleHetzner: ClientConfig = {
  slug: "examplehz",
  environments: {
    prod: {
      provider: "hetzner",
      region: "fsn1", // fsn1, nbg1, hel1 (EU); ash, hil (US); sin — the cx types are sold in the EU only
      // size: "cx23",                 // default; see docs/providers.md for prices
      // image: "debian-13",           // default (Debian 13); "debian-12" is still supported
      sshKeys: [
        // Uploaded to the Hetzner project as "<server name>-<key name>" (names must be unique per project).
        { name: "jane", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1Pi+dxBgCDQeTMNkDZHlzCeyiA/We8fipfGJLSxRve jane@pixelco.example" },
      ],
      sshAllowedCidrs: ["203.0.113.10/32", "2001:db8:1234::/48"],
      // No digitalOceanZone: point an A record at the `ipv4` output and an AAAA record at `ipv6` yourself.
      domain: { name: "app.examplehz-client.com" },
      app: {
        repo: "https://github.com/pixelco/example-app.git",
        env: { LOG_LEVEL: "info" },
        secrets: ["SESSION_SECRET"],
      },
      volume: { sizeGiB: 10 }, // Hetzner volumes are 10 GiB at least
      backups: { region: "eu-central-1" },
    },
  },
};

export default exampleHetzner;
