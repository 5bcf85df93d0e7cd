/**
 * `database` and `servers` (issue 16): the engine, the managed PostgreSQL cluster's size and version, and how many
 * app servers. Pairs: this input fails with this message; the nearest good input passes.
 */
import { AGENCY } from "../app/agency.ts";
import example from "../app/clients/example.ts";
import exampleHetzner from "../app/clients/example-hetzner.ts";
import { loadEnvironments } from "../app/config/load.ts";
import type { ClientConfig, EnvironmentConfig } from "../app/config/types.ts";
import { FILE, problemsOf } from "./support/problems.ts";

const client = (base: EnvironmentConfig, env: Record<string, unknown>): ClientConfig => ({
  slug: "acme",
  environments: { prod: { ...base, ...env } as EnvironmentConfig },
});
const digitalocean = (env: Record<string, unknown>) => client(example.environments.prod, env);
const hetzner = (env: Record<string, unknown>) => client(exampleHetzner.environments.prod, env);
const at = (path: string) => `${FILE}: environments.prod.${path}`;

describe("database and servers: the defaults", () => {
  test("SQLite, one server; the cluster's defaults are the smallest size and the pinned version 17", () => {
    const [env] = loadEnvironments(AGENCY, [{ config: digitalocean({}), file: FILE }]);
    expect(env.database).toEqual({ engine: "sqlite", postgres: { size: "db-s-1vcpu-1gb", version: "17" } });
    expect(env.servers).toBe(1);
  });

  test("postgres on DigitalOcean with three servers resolves as written", () => {
    const [env] = loadEnvironments(AGENCY, [
      { config: digitalocean({ database: { engine: "postgres", postgres: { size: "db-s-1vcpu-2gb" } }, servers: 3 }), file: FILE },
    ]);
    expect(env.database).toEqual({ engine: "postgres", postgres: { size: "db-s-1vcpu-2gb", version: "17" } });
    expect(env.servers).toBe(3);
  });
});

describe("database.engine", () => {
  test("an unknown engine names the two", () => {
    expect(problemsOf(digitalocean({ database: { engine: "mysql" } }))).toEqual([at('database.engine: "mysql" is not a database engine (sqlite, postgres)')]);
    expect(problemsOf(digitalocean({ database: { engine: "sqlite" } }))).toEqual([]);
  });

  test("Hetzner + postgres: refused naming both choices; Hetzner on SQLite passes", () => {
    expect(problemsOf(hetzner({ database: { engine: "postgres" } }))).toEqual([
      at(
        'database.engine: "postgres" is not available on Hetzner Cloud: it has no managed PostgreSQL. Fix: stay on SQLite (engine: "sqlite", ' +
          'the default), or move the environment to DigitalOcean (provider: "digitalocean"), which has managed PostgreSQL',
      ),
    ]);
    expect(problemsOf(hetzner({ database: { engine: "sqlite" } }))).toEqual([]);
  });

  test("an unknown key in database or database.postgres is named with the known ones", () => {
    expect(problemsOf(digitalocean({ database: { engine: "postgres", postgress: {} } }))).toEqual([
      at('database.postgress: unknown field "postgress" — a typo? Known fields: engine, postgres'),
    ]);
    expect(problemsOf(digitalocean({ database: { engine: "postgres", postgres: { nodes: 2 } } }))).toEqual([
      at('database.postgres.nodes: unknown field "nodes" — a typo? Known fields: size, version'),
    ]);
  });
});

describe("database.postgres: size and version are DigitalOcean's", () => {
  test.each<[string, Record<string, unknown>, Record<string, unknown>, string]>([
    ["a droplet size as the cluster's", { size: "s-1vcpu-1gb" }, { size: "db-s-1vcpu-1gb" }, 'size: "s-1vcpu-1gb" is not a DigitalOcean managed PostgreSQL size (db-s-1vcpu-1gb, db-s-1vcpu-2gb, db-s-2vcpu-4gb, db-s-4vcpu-8gb)'],
    ["a version DigitalOcean does not run", { version: "12" }, { version: "16" }, 'version: "12" is not a DigitalOcean managed PostgreSQL version (14, 15, 16, 17)'],
    ["a version as a number", { version: 17 }, { version: "17" }, "version: 17 is not a DigitalOcean managed PostgreSQL version (14, 15, 16, 17)"],
  ])("%s: refused with the list; the nearest good value passes", (_name, bad, good, message) => {
    expect(problemsOf(digitalocean({ database: { engine: "postgres", postgres: bad } }))).toEqual([at(`database.postgres.${message}`)]);
    expect(problemsOf(digitalocean({ database: { engine: "postgres", postgres: good } }))).toEqual([]);
  });
});

describe("servers", () => {
  test.each([0, 11, 2.5, "2"])("%p is not 1 to 10", (servers) => {
    expect(problemsOf(digitalocean({ servers, database: { engine: "postgres" } }))).toEqual([
      at(`servers: ${JSON.stringify(servers)} must be a whole number from 1 to 10`),
    ]);
  });

  test("more than one server on SQLite: refused, naming the move to PostgreSQL; with postgres it passes", () => {
    expect(problemsOf(digitalocean({ servers: 2 }))).toEqual([
      at(
        `servers: 2 servers need database.engine "postgres": SQLite lives on one server's volume, which a second server cannot share. ` +
          `Fix: servers: 1, or first move the environment to PostgreSQL (database: { engine: "postgres" }, then scripts/migrate-to-postgres.ts) and raise servers after`,
      ),
    ]);
    expect(problemsOf(digitalocean({ servers: 2, database: { engine: "postgres" } }))).toEqual([]);
    expect(problemsOf(digitalocean({ servers: 10, database: { engine: "postgres" } }))).toEqual([]);
  });

  test("more than one server on Hetzner: the fix does not suggest a PostgreSQL Hetzner has not got", () => {
    expect(problemsOf(hetzner({ servers: 2 }))).toEqual([
      at(
        `servers: 2 servers need database.engine "postgres": SQLite lives on one server's volume, which a second server cannot share. ` +
          `Hetzner Cloud has no managed PostgreSQL. Fix: servers: 1, or move the environment to DigitalOcean with database: { engine: "postgres" }`,
      ),
    ]);
    expect(problemsOf(hetzner({ servers: 1 }))).toEqual([]);
  });
});

describe("servers > 1 with a domain: the load balancer's certificate needs the zone on DigitalOcean", () => {
  const postgres = { database: { engine: "postgres" }, servers: 2 };
  test("a domain without digitalOceanZone: refused naming the fix; with the zone, or without a domain, it passes", () => {
    expect(problemsOf(digitalocean({ ...postgres, domain: { name: "app.acme.example" } }))).toEqual([
      at(
        `servers: 2 servers sit behind a load balancer, which terminates TLS with a Let's Encrypt certificate DigitalOcean obtains through its own DNS, ` +
          `so the domain "app.acme.example" needs domain.digitalOceanZone. Fix: move the domain's zone to DigitalOcean and set digitalOceanZone, ` +
          `or servers: 1 (Caddy on the one server gets the certificate itself)`,
      ),
    ]);
    expect(problemsOf(digitalocean({ ...postgres, domain: { name: "app.acme.example", digitalOceanZone: "acme.example" } }))).toEqual([]);
    expect(problemsOf(digitalocean({ ...postgres, domain: undefined }))).toEqual([]);
    expect(problemsOf(digitalocean({ database: { engine: "postgres" }, domain: { name: "app.acme.example" } }))).toEqual([]);
  });
});
