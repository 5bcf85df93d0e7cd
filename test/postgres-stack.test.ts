/**
 * What the stack guarantees with `database.engine: "postgres"` and `servers` > 1 (issue 16): the managed cluster
 * (pinned, smallest, in the droplets' region and VPC, never destroyed), its firewall admitting only the environment's
 * droplets, the app's and the drill's databases and the user, the outputs (connection strings sensitive, the password
 * only as a reference), and the load balancer in front of several servers. The whole stack is in the snapshots
 * (test/digitalocean-stack.test.ts: examplepg-prod); these are the intents.
 */
import { gunzipSync } from "node:zlib";
import { DIGITALOCEAN_POSTGRES } from "../app/config/providers.ts";
import type { ResolvedEnvironment } from "../app/config/types.ts";
import { shippedEnvironment } from "../lab/environments.ts";
import { clusterMaintenanceWindow, DATABASE } from "../stacks/database.ts";
import { LB_HEALTH_CHECK, drainWaitSeconds } from "../cloud-init/load-balancer.ts";
import { type SynthesizedStack, synthesize } from "./support/synth.ts";

/** The shipped PostgreSQL example: two servers, a domain in a DigitalOcean zone. */
const pgEnv = shippedEnvironment("examplepg-prod");
/** The same environment on one server, and on SQLite. */
const oneServer: ResolvedEnvironment = { ...pgEnv, servers: 1 };
const onSqlite: ResolvedEnvironment = { ...oneServer, database: { ...pgEnv.database, engine: "sqlite" } };

const ref = (type: string, stack: SynthesizedStack, attribute: string) => {
  const names = Object.keys(stack.json.resource[type] ?? {});
  if (names.length !== 1) throw new Error(`expected one ${type}, found ${names.length}`);
  return `\${${type}.${names[0]}.${attribute}}`;
};

describe("the managed PostgreSQL cluster (examplepg-prod)", () => {
  let stack: SynthesizedStack;
  beforeAll(() => {
    stack = synthesize(pgEnv);
  });

  test("PostgreSQL, the pinned version 17, the smallest size, one node, in the droplets' region, never destroyed", () => {
    const cluster = stack.resource("digitalocean_database_cluster");
    expect(cluster).toMatchObject({ engine: "pg", version: "17", size: "db-s-1vcpu-1gb", node_count: 1, region: "fra1", lifecycle: { prevent_destroy: true } });
    // The smallest size is the default: no cheaper one is offered.
    const prices = DIGITALOCEAN_POSTGRES.sizes;
    expect(Math.min(...Object.values(prices))).toBe(prices[cluster.size]);
    for (const droplet of stack.resources("digitalocean_droplet")) expect(droplet.region).toBe(cluster.region);
  });

  test("its maintenance window is the environment's (maintenance.window) when that is one weekly time; else DigitalOcean's", () => {
    expect(pgEnv.maintenance.window).toBe("Sun 04:00");
    expect(stack.resource("digitalocean_database_cluster").maintenance_window).toEqual([{ day: "sunday", hour: "04:00:00" }]);
    expect(clusterMaintenanceWindow("Wed *-*-* 23:30:00 UTC")).toEqual({ day: "wednesday", hour: "23:30:00" });
    for (const other of ["daily", "Sat,Sun 04:00", "*-*-* 04:00:00", "Sun 24:00", "Sun 04:00:30"]) expect([other, clusterMaintenanceWindow(other)]).toEqual([other, undefined]);
    const daily = synthesize({ ...pgEnv, maintenance: { ...pgEnv.maintenance, window: "daily" } });
    expect(daily.resource("digitalocean_database_cluster").maintenance_window).toBeUndefined();
  });

  test("the cluster and the droplets are in the same VPC: neither names one, so both are in the region's default VPC", () => {
    expect(stack.resource("digitalocean_database_cluster").private_network_uuid).toBeUndefined();
    for (const droplet of stack.resources("digitalocean_droplet")) expect(droplet.vpc_uuid).toBeUndefined();
  });

  test("configured size and version reach the cluster", () => {
    const other = synthesize({ ...pgEnv, database: { engine: "postgres", postgres: { size: "db-s-2vcpu-4gb", version: "16" } } });
    expect(other.resource("digitalocean_database_cluster")).toMatchObject({ size: "db-s-2vcpu-4gb", version: "16" });
  });

  test("the database firewall admits only the tag every app server carries from its creation", () => {
    const firewall = stack.resource("digitalocean_database_firewall");
    const serverTag = ref("digitalocean_tag", stack, "name");
    expect(firewall.cluster_id).toBe(ref("digitalocean_database_cluster", stack, "id"));
    expect(firewall.rule).toEqual([{ type: "tag", value: serverTag }]);
    const droplets = stack.resources("digitalocean_droplet");
    expect(droplets).toHaveLength(2);
    for (const droplet of droplets) expect(droplet.tags).toContain(serverTag);
    // The web firewall is bound by the same tag: a droplet that has it is this environment's server from its first second.
    expect(stack.resource("digitalocean_firewall").tags).toEqual([serverTag]);
  });

  test("the app's database, the drill's scratch database and the app's user, on this cluster", () => {
    const cluster = ref("digitalocean_database_cluster", stack, "id");
    expect(stack.resources("digitalocean_database_db").map((db) => [db.name, db.cluster_id]).sort()).toEqual([
      ["app", cluster],
      ["app_drill", cluster],
    ]);
    expect(DATABASE.drillName).toBe(`${DATABASE.name}_drill`);
    expect(stack.resource("digitalocean_database_user")).toEqual({ cluster_id: cluster, name: DATABASE.user });
    expect(stack.json.data.digitalocean_database_ca).toEqual({ [Object.keys(stack.json.data.digitalocean_database_ca)[0]]: { cluster_id: cluster } });
  });

  test("outputs: the URLs are sensitive, on the private host, TLS verify-full; the CA from the cluster", () => {
    const { output } = stack.json;
    const user = Object.keys(stack.json.resource.digitalocean_database_user)[0];
    const cluster = Object.keys(stack.json.resource.digitalocean_database_cluster)[0];
    const [app, drill] = ["app", "app_drill"].map(
      (name) => Object.entries(stack.json.resource.digitalocean_database_db).find(([, db]: [string, any]) => db.name === name)![0],
    );
    const url = (who: string, password: string, db: string) =>
      `postgresql://\${${who}}:\${replace(urlencode(${password}), "+", "%20")}@\${digitalocean_database_cluster.${cluster}.private_host}:\${digitalocean_database_cluster.${cluster}.port}/\${digitalocean_database_db.${db}.name}?sslmode=verify-full`;
    const appUser = `digitalocean_database_user.${user}`;
    expect(output.database_url).toMatchObject({ sensitive: true, value: url(`${appUser}.name`, `${appUser}.password`, app) });
    expect(output.database_drill_url).toMatchObject({ sensitive: true, value: url(`${appUser}.name`, `${appUser}.password`, drill) });
    const admin = `digitalocean_database_cluster.${cluster}`;
    expect(output.database_admin_url).toMatchObject({ sensitive: true, value: url(`${admin}.user`, `${admin}.password`, app) });
    expect(output.database_ca_certificate.value).toBe(`\${data.digitalocean_database_ca.${Object.keys(stack.json.data.digitalocean_database_ca)[0]}.certificate}`);
    // Every output holding a password is sensitive.
    const withPassword = Object.entries(output).filter(([, o]: [string, any]) => JSON.stringify(o.value).includes(".password"));
    expect(withPassword.map(([name]) => name).sort()).toEqual(["database_admin_url", "database_drill_url", "database_url"]);
    for (const [, o] of withPassword) expect((o as { sensitive: boolean }).sensitive).toBe(true);
  });

  test("no password in the synthesized Terraform: only references to the ones DigitalOcean generates, none in the servers' user data", () => {
    // No argument named password anywhere (a literal would be one), and no variable that could carry one.
    const keys: string[] = [];
    JSON.stringify(stack.json, (key, value) => (key && keys.push(key), value));
    expect(keys.filter((key) => /password/i.test(key))).toEqual([]);
    expect(Object.keys(stack.json.variable ?? {}).filter((name) => /database|postgres|password/i.test(name))).toEqual([]);
    // Every expression that mentions a password percent-encodes <user or cluster>.password, in an output.
    const expressions = [...JSON.stringify(stack.json).matchAll(/\$\{([^{}]*password[^{}]*)\}/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
    expect(expressions.length).toBeGreaterThanOrEqual(3);
    expect(expressions.filter((e) => !/^replace\(urlencode\(digitalocean_database_(user|cluster)\.[A-Za-z0-9_]+\.password\), "\+", "%20"\)$/.test(e))).toEqual([]);
    expect(JSON.stringify(stack.json.resource)).not.toMatch(/\.password\b/);
    for (const droplet of stack.resources("digitalocean_droplet")) expect(droplet.user_data).not.toMatch(/digitalocean_database|postgres(ql)?:\/\//);
  });

  test("the daily pg_dumps in the bucket expire after backups.fallback.keepDays, as the fallback copies do", () => {
    const rules = stack.resource("aws_s3_bucket_lifecycle_configuration").rule;
    const keepDays = pgEnv.backups.fallback.keepDays;
    expect(rules).toContainEqual(expect.objectContaining({ id: "expire-old-pg-dumps", status: "Enabled", filter: [{ prefix: "prod/pg-dump/" }], expiration: [{ days: keepDays }] }));
    expect(rules).toContainEqual(expect.objectContaining({ filter: [{ prefix: "prod/fallback/" }], expiration: [{ days: keepDays }] }));
    const longer = synthesize({ ...pgEnv, backups: { ...pgEnv.backups, fallback: { ...pgEnv.backups.fallback, keepDays: 30 } } });
    expect(longer.resource("aws_s3_bucket_lifecycle_configuration").rule.find((r: any) => r.id === "expire-old-pg-dumps").expiration).toEqual([{ days: 30 }]);
  });

  test("the cluster is in the environment's project, beside its servers", () => {
    expect(stack.resource("digitalocean_project").resources).toContain(ref("digitalocean_database_cluster", stack, "urn"));
  });
});

describe("an environment on SQLite has no database resources and no database outputs", () => {
  test.each([
    ["example-prod (shipped)", shippedEnvironment("example-prod")],
    ["examplepg-prod switched back to sqlite", onSqlite],
  ])("%s", (_name, env) => {
    const stack = synthesize(env);
    expect(Object.keys(stack.json.resource).filter((type) => /database|loadbalancer|certificate/.test(type))).toEqual([]);
    expect(stack.json.data?.digitalocean_database_ca).toBeUndefined();
    expect(Object.keys(stack.json.output).filter((name) => name.startsWith("database_") || name === "load_balancer_ip")).toEqual([]);
  });
});

describe("servers: 2 behind a load balancer (examplepg-prod)", () => {
  let stack: SynthesizedStack;
  let single: SynthesizedStack;
  beforeAll(() => {
    stack = synthesize(pgEnv);
    single = synthesize(oneServer);
  });

  test("going from 1 server to 2 replaces nothing: the first server's resources keep their ids and configuration", () => {
    for (const type of ["digitalocean_droplet", "digitalocean_volume", "digitalocean_volume_attachment", "digitalocean_reserved_ip", "digitalocean_reserved_ip_assignment", "digitalocean_tag", "digitalocean_database_cluster"]) {
      const before = single.json.resource[type];
      const after = stack.json.resource[type];
      expect(Object.keys(before)).toHaveLength(1);
      for (const [id, config] of Object.entries(before)) {
        // The first droplet's user data is ignored by Terraform (ignore_changes); the rest must be identical.
        const strip = ({ user_data: _userData, ...rest }: any) => rest;
        expect([type, id, strip(after[id])]).toEqual([type, id, strip(config)]);
      }
    }
  });

  test("the second server: its own droplet, volume (no prevent_destroy: no data of record), reserved IP and first boot", () => {
    const droplets = stack.resources("digitalocean_droplet").sort((a, b) => a.name.localeCompare(b.name));
    expect(droplets.map((d) => d.name)).toEqual(["pixelco-examplepg-prod", "pixelco-examplepg-prod-2"]);
    const volumes = stack.resources("digitalocean_volume");
    expect(volumes.map((v) => [v.name, v.lifecycle.prevent_destroy]).sort()).toEqual([
      ["pixelco-examplepg-prod-data", true],
      ["pixelco-examplepg-prod-data-2", false],
    ]);
    // Each droplet waits for its own first-boot bundle, which mounts its own volume.
    const bundleOf = (droplet: Record<string, any>) => {
      const id = droplet.depends_on.find((dep: string) => dep.startsWith("aws_s3_object.")).split(".")[1];
      return gunzipSync(Buffer.from(stack.json.resource.aws_s3_object[id].content_base64, "base64")).toString("utf8");
    };
    const [first, second] = droplets.map(bundleOf);
    expect(first).toContain("scsi-0DO_Volume_pixelco-examplepg-prod-data\n");
    expect(second).toContain("scsi-0DO_Volume_pixelco-examplepg-prod-data-2\n");
    expect(first).not.toContain("pixelco-examplepg-prod-data-2");
    // Each knows its place: a server after the first restores no SQLite and waits for database.env at its first boot.
    expect(first).toMatch(/^SERVER_INDEX='?1'?$/m);
    expect(second).toMatch(/^SERVER_INDEX='?2'?$/m);
    expect(stack.resources("digitalocean_reserved_ip")).toHaveLength(2);
  });

  test("the load balancer sends to the droplets by their tag and health-checks the app's health path through Caddy", () => {
    const lb = stack.resource("digitalocean_loadbalancer");
    expect(lb).toMatchObject({
      region: "fra1",
      droplet_tag: ref("digitalocean_tag", stack, "name"),
      healthcheck: {
        protocol: "http",
        port: 80,
        path: pgEnv.app.healthPath,
        check_interval_seconds: LB_HEALTH_CHECK.intervalSeconds,
        response_timeout_seconds: LB_HEALTH_CHECK.timeoutSeconds,
        unhealthy_threshold: LB_HEALTH_CHECK.unhealthyThreshold,
        healthy_threshold: LB_HEALTH_CHECK.healthyThreshold,
      },
    });
    // DigitalOcean's minimums (3 s, 3 s, 2, 2): a drained server is out within deploy.ts's drain wait.
    const check = lb.healthcheck;
    expect([check.check_interval_seconds, check.response_timeout_seconds, check.unhealthy_threshold, check.healthy_threshold].every((v, i) => v >= [3, 3, 2, 2][i])).toBe(true);
    const outWithin = check.unhealthy_threshold * check.check_interval_seconds + check.response_timeout_seconds;
    console.log(`LB health check every ${check.check_interval_seconds} s: a drained server is out within ${outWithin} s; deploy.ts waits ${drainWaitSeconds()} s`);
    expect(outWithin).toBeLessThan(drainWaitSeconds());
    expect(lb.droplet_ids).toBeUndefined();
    const custom = synthesize({ ...pgEnv, app: { ...pgEnv.app, healthPath: "/up" } });
    expect(custom.resource("digitalocean_loadbalancer").healthcheck.path).toBe("/up");
  });

  test("TLS ends at the load balancer with DigitalOcean's Let's Encrypt certificate for the domain; 80 redirects", () => {
    const lb = stack.resource("digitalocean_loadbalancer");
    const certificate = stack.resource("digitalocean_certificate");
    expect(certificate).toMatchObject({ type: "lets_encrypt", domains: [pgEnv.domain!.name], lifecycle: { create_before_destroy: true } });
    expect(lb.forwarding_rule).toEqual([
      { entry_protocol: "https", entry_port: 443, target_protocol: "http", target_port: 80, certificate_name: ref("digitalocean_certificate", stack, "name") },
      { entry_protocol: "http", entry_port: 80, target_protocol: "http", target_port: 80 },
    ]);
    expect(lb.redirect_http_to_https).toBe(true);
    // The stack writes the A record itself, to the load balancer; no AAAA (the load balancer here is IPv4 only).
    expect(lb.disable_lets_encrypt_dns_records).toBe(true);
    expect(stack.resources("digitalocean_record").map((r) => [r.type, r.value])).toEqual([["A", ref("digitalocean_loadbalancer", stack, "ip")]]);
  });

  test("the droplets' firewall lets the load balancer in on 80 and nothing else from the world; SSH as before", () => {
    const inbound = stack.resource("digitalocean_firewall").inbound_rule;
    expect(inbound).toEqual([
      { protocol: "tcp", port_range: "22", source_addresses: [...pgEnv.sshAllowedCidrs] },
      { protocol: "tcp", port_range: "80", source_load_balancer_uids: [ref("digitalocean_loadbalancer", stack, "id")] },
    ]);
    // One server: 80 and 443 from anywhere, as before (Caddy gets its own certificate).
    expect(single.resource("digitalocean_firewall").inbound_rule.slice(1).map((r: any) => [r.port_range, r.source_addresses])).toEqual([
      ["80", ["0.0.0.0/0", "::/0"]],
      ["443", ["0.0.0.0/0", "::/0"]],
    ]);
  });

  test("outputs: server_ipv4s lists every server's reserved IP in order, ipv4 is the first, load_balancer_ip the balancer's", () => {
    const { output } = stack.json;
    // The first server's construct ids carry no number, the second's a 2.
    const ip = (prefix: string) => `\${digitalocean_reserved_ip.${Object.keys(stack.json.resource.digitalocean_reserved_ip).find((id) => id.startsWith(prefix))}.ip_address}`;
    expect(output.server_ipv4s.value).toEqual([ip("Server_ReservedIp_"), ip("Server_ReservedIp2_")]);
    expect(output.ipv4.value).toBe(output.server_ipv4s.value[0]);
    expect(output.load_balancer_ip.value).toBe(ref("digitalocean_loadbalancer", stack, "ip"));
    expect(single.json.output.load_balancer_ip).toBeUndefined();
    expect(single.json.output.server_ipv4s.value).toEqual([single.json.output.ipv4.value]);
  });

  test("DigitalOcean's alerts watch every droplet; the project holds them all and the load balancer", () => {
    const droplets = Object.keys(stack.json.resource.digitalocean_droplet).map((id) => `\${digitalocean_droplet.${id}.id}`);
    for (const alert of stack.resources("digitalocean_monitor_alert")) expect(alert.entities).toEqual(droplets);
    const project = stack.resource("digitalocean_project").resources;
    expect(project).toContain(ref("digitalocean_loadbalancer", stack, "urn"));
    expect(project.filter((urn: string) => urn.startsWith("${digitalocean_droplet."))).toHaveLength(2);
  });

  test("three servers without a domain: port 80 only, no certificate; the uptime check probes the balancer", () => {
    const three = synthesize({ ...pgEnv, servers: 3, domain: undefined, alerts: { ...pgEnv.alerts, emails: ["ops@pixelco.example"] } });
    const lb = three.resource("digitalocean_loadbalancer");
    expect(lb.forwarding_rule).toEqual([{ entry_protocol: "http", entry_port: 80, target_protocol: "http", target_port: 80 }]);
    expect(lb.redirect_http_to_https).toBe(false);
    expect(three.resources("digitalocean_certificate")).toEqual([]);
    expect(three.resources("digitalocean_droplet").map((d) => d.name).sort()).toEqual(["pixelco-examplepg-prod", "pixelco-examplepg-prod-2", "pixelco-examplepg-prod-3"]);
    expect(three.json.output.server_ipv4s.value).toHaveLength(3);
    expect(three.resource("digitalocean_uptime_check").target).toBe(`http://${ref("digitalocean_loadbalancer", three, "ip")}${pgEnv.app.healthPath}`);
  });
});
