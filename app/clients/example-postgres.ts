import type { ClientConfig } from "../config/types.ts";

/**
 * The example client after it outgrew SQLite (docs/runbook.md, "A client outgrew SQLite"): DigitalOcean Managed
 * PostgreSQL (the smallest cluster, version pinned) and two app servers behind a load balancer. Only the database
 * fields differ from `example.ts`, which documents every other field.
 *
 * What the stack adds: the cluster (prevent_destroy), its firewall admitting only this environment's droplets, the
 * `app` and `app_drill` databases and the `app` user, a load balancer that health-checks each server and terminates
 * TLS with a Let's Encrypt certificate (the zone is on DigitalOcean). The connection string is a sensitive output,
 * never in the synthesized Terraform; scripts/migrate-to-postgres.ts puts it on the servers. Synth needs no credentials.
 */
const examplePostgres: ClientConfig = {
  slug: "examplepg",
  environments: {
    prod: {
      provider: "digitalocean",
      region: "fra1",
      sshKeys: [
        { name: "jane", publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1Pi+dxBgCDQeTMNkDZHlzCeyiA/We8fipfGJLSxRve jane@pixelco.example" },
      ],
      sshAllowedCidrs: ["203.0.113.10/32", "2001:db8:1234::/48"],
      // Behind the load balancer the certificate is DigitalOcean's: the zone must be on DigitalOcean.
      domain: { name: "app.examplepg-client.com", digitalOceanZone: "examplepg-client.com" },
      app: {
        repo: "https://github.com/pixelco/example-app.git",
        env: { LOG_LEVEL: "info" },
        secrets: ["SESSION_SECRET"],
      },
      backups: { region: "eu-central-1" },
      database: { engine: "postgres" }, // postgres: { size: "db-s-1vcpu-1gb", version: "17" } by default
      servers: 2,
    },
  },
};

export default examplePostgres;
