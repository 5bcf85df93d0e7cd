/**
 * Debian 13 (trixie), the default image on both providers (issue 13, point 5): the example client's real
 * user data booted on a trixie root filesystem must bootstrap, serve the app through Caddy and replicate a
 * row written through the app to S3. The rest of the boot suite (boot.e2e.test.ts) runs on Debian 12, which
 * stays supported; both images are booted in CI. The trixie image is built once and cached beside
 * bookworm's (lab/harness/rootfs.ts).
 */
import { DIGITALOCEAN } from "../../app/config/providers.ts";
import { createKitLab, type KitLab, labEnvironment, printTimings } from "../../lab/kit-lab.ts";
import { bootHealthy, expectReplicated, postRows } from "./boot-checks.ts";

let lab: KitLab;

beforeAll(async () => {
  lab = await createKitLab({ suite: "trixie" });
}, 15 * 60_000);
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "Debian 13");
});

test("the example client's user data boots on Debian 13: bootstrap done, healthy through Caddy, a row written and replicated", async () => {
  const env = labEnvironment(lab);
  expect(env.image).toBe(DIGITALOCEAN.defaultImage);
  expect(env.image).toBe("debian-13-x64");
  const server = await bootHealthy(lab, "boot-trixie", { env });

  const osRelease = (await server.machine.exec(["cat", "/etc/os-release"])).stdout;
  expect(osRelease).toMatch(/^VERSION_ID="13"$/m);
  expect(osRelease).toMatch(/^VERSION_CODENAME=trixie$/m);
  expect((await server.machine.exec(["systemctl", "show", "-p", "Result", "--value", "kit-bootstrap.service"])).stdout.trim()).toBe("success");
  expect((await server.machine.exec("systemctl --failed --no-legend --plain")).stdout.trim()).toBe("");
  expect((await server.machine.exec(["systemctl", "is-active", "caddy.service", `app@${env.app.port}.service`, "litestream.service"])).stdout.trim()).toBe(
    "active\nactive\nactive",
  );
  const versions = await server.machine.exec("sqlite3 --version | cut -d' ' -f1; curl --version | head -n1 | cut -d' ' -f2; caddy version | cut -d' ' -f1");
  lab.timings.push(`boot-trixie: sqlite3, curl, caddy from Debian 13: ${versions.stdout.trim().split("\n").join(", ")}`);

  const ids = await postRows(server, 1);
  await expectReplicated(lab, server, ids, "trixie-replica");
}, 15 * 60_000);
