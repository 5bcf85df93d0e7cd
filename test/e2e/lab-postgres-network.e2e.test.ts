/**
 * The lab's PostgreSQL (startPostgres) on the lab network, as booted machines reach it: listening on the
 * network's host address, it admits the one machine address it is given (the database firewall admits the
 * droplet) over TLS verified against its CA, and refuses a second machine on the same network and the host
 * itself. Machines here are bare network namespaces on the lab bridge (what bootMachine gives a container),
 * running the host's psql: no boot needed, a few seconds.
 */
import { join } from "node:path";
import { createLabNetwork, type MachineNic } from "../../lab/harness/network.ts";
import { POSTGRES_BIN_DIR, startPostgres, type LabPostgres } from "../../lab/harness/postgres.ts";
import { run } from "../../lab/harness/process.ts";
import { Teardown } from "../../lab/harness/teardown.ts";

let teardown: Teardown;
let pg: LabPostgres;
let admitted: MachineNic;
let other: MachineNic;

beforeAll(async () => {
  teardown = await Teardown.begin();
  const network = await createLabNetwork(teardown);
  admitted = await network.attach();
  other = await network.attach();
  pg = await startPostgres(teardown, { host: network.hostAddress, allow: [admitted.address] });
  console.log(`lab PostgreSQL on ${pg.host}:${pg.port}, admitting ${admitted.address} only`);
});
afterAll(() => teardown?.run());

/** psql with the stack's URL and the CA file, from inside a machine's network namespace (or the host's). */
async function psqlFrom(nic: MachineNic | undefined, sql: string) {
  const psql = [join(POSTGRES_BIN_DIR, "psql"), "-X", "-A", "-t", "-q", pg.url(), "-c", sql];
  const argv = nic ? ["ip", "netns", "exec", nic.netns, ...psql] : psql;
  const result = await run(argv, { env: { PATH: process.env.PATH, PGSSLROOTCERT: pg.caFile, PGCONNECT_TIMEOUT: "5" }, allowFailure: true });
  return { code: result.code, out: result.stdout.trim(), err: result.stderr.trim() };
}

test("the admitted machine connects over TLS with verify-full, and is seen at its own address", async () => {
  expect(pg.url()).toContain(`@${pg.host}:${pg.port}/app?sslmode=verify-full`);
  const answer = await psqlFrom(admitted, "SELECT host(inet_client_addr()), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  expect(answer).toEqual({ code: 0, out: `${admitted.address}|t`, err: "" });
});

test("another machine on the same network is refused by the database firewall, and so is the host", async () => {
  const refused = await psqlFrom(other, "SELECT 1");
  expect(refused.code).not.toBe(0);
  expect(refused.err).toContain(`no pg_hba.conf entry for host "${other.address}", user "app", database "app", SSL encryption`);
  const host = await psqlFrom(undefined, "SELECT 1");
  expect(host.err).toContain(`no pg_hba.conf entry for host "${pg.host}"`);
});
