import type { ClientConfig, EnvironmentConfig } from "../config/types.ts";

/**
 * The example client: ships with the kit, synthesizes without cloud credentials, and is the reference
 * for every field, each with its default (set, commented out, or `// default: …`); the fields are declared
 * in app/config/fields.ts, and test/config-fields.test.ts checks this file against them.
 * Copy it to `app/clients/<slug>.ts` to add a client.
 */

/** Settings both environments share; each environment spreads it and overrides what differs. */
const shared = {
  provider: "digitalocean",
  region: "fra1",
  // size: "s-1vcpu-1gb",          // default; see README for prices
  // image: "debian-13-x64",       // default (Debian 13); "debian-12-x64" is still supported
  sshKeys: [
    // Replace with your staff's keys. On DigitalOcean, register each key once in the account under the
    // same name (Settings → Security): the droplet is created with it, so DigitalOcean never mails a root password.
    { name: "jane", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1Pi+dxBgCDQeTMNkDZHlzCeyiA/We8fipfGJLSxRve jane@pixelco.example" },
  ],
  // The only addresses that may reach SSH (office, VPN). The whole internet is refused.
  sshAllowedCidrs: ["203.0.113.10/32", "2001:db8:1234::/48"],
  app: {
    repo: "https://github.com/pixelco/example-app.git",
    // ref: "main",                 // branch, tag or commit deployed at first boot
    // port: 8000,                  // loopback port; the deploy script also uses port + 1
    // healthPath: "/healthz",
    // tasks: { migrate: "migrate", start: "start" },
    env: { LOG_LEVEL: "info" },    // default: {}; non-secret, lands in /etc/app/app.env
    // Values come from TF_VAR_secret_<NAME> at deploy time; never from this file.
    secrets: ["SESSION_SECRET"],   // default: []
    // privateRepo: false,          // true: the server clones with TF_VAR_git_deploy_key
  },
  // volume: { sizeGiB: 10 },     // grows online at the next deploy after cdktf deploy; never shrinks
  backups: {
    region: "eu-central-1",
    // accessKeys: ["a"],           // key slots, oldest first; ["a", "b"] while rotating (scripts/rotate-keys.ts)
    // noncurrentVersionDays: 30,
    // litestream: { syncInterval: "1s", snapshotInterval: "1h", retention: "72h" },
    // fallback: { onCalendar: "*-*-* 03:30:00", keepDays: 7 },
  },
  // drill: { onCalendar: "monthly", pingUrl: "https://hc-ping.com/<uuid>" },
  // Updates that need a reboot (a kernel) wait for this window, UTC; autoReboot: false never reboots by itself.
  // maintenance: { window: "Sun 04:00", autoReboot: true },
  // The watcher checks the server every minute (docs/runbook.md, "An alert fired") and reports to a dead-man URL
  // and/or a webhook. The URLs are secrets: they come from TF_VAR_alert_dead_man_url / TF_VAR_alert_webhook_url.
  // alerts: { deadMan: false, webhook: false },
  // SQLite on the server's volume, or a managed PostgreSQL cluster (DigitalOcean only; see app/clients/example-postgres.ts and
  // the runbook's "A client outgrew SQLite"): the smallest size, version pinned.
  // database: { engine: "sqlite", postgres: { size: "db-s-1vcpu-1gb", version: "17" } },
  // servers: 1,                    // more than one needs engine "postgres": behind a load balancer
} satisfies EnvironmentConfig;

const example: ClientConfig = {
  slug: "example",
  environments: {
    prod: {
      ...shared,
      domain: { name: "app.example-client.com", digitalOceanZone: "example-client.com" },
      app: { ...shared.app, ref: "main" },
      volume: { sizeGiB: 10 },
      alerts: {
        deadMan: true, // default: false; its URL (e.g. https://hc-ping.com/<uuid>) from TF_VAR_alert_dead_man_url
        webhook: true, // default: false; its URL (e.g. a Slack incoming webhook) from TF_VAR_alert_webhook_url
        // DigitalOcean's own alerts (CPU, memory, root disk; the health URL probed from outside) go to these.
        emails: ["ops@pixelco.example"], // default: []
        // slackChannel: "#ops",          // also to Slack; the webhook URL comes from TF_VAR_alert_slack_webhook_url
      },
    },
    staging: {
      ...shared,
      app: { ...shared.app, ref: "main", env: { LOG_LEVEL: "debug" } },
      volume: { sizeGiB: 5 },
      backups: { ...shared.backups, noncurrentVersionDays: 7 },
    },
  },
};

export default example;
