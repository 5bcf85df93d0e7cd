/** The kit lab boots the example client's real user data: the foundation of the boot and ops suites. */
import { bootKitServer, createKitLab, type KitLab, labEnvironment, printTimings, waitForBootstrap } from "./kit-lab";

let lab: KitLab;
beforeAll(async () => {
  lab = await createKitLab();
});
afterAll(async () => {
  await lab?.teardown.run();
  printTimings(lab, "kit lab smoke");
});

test("the example client's user data boots, and the app answers through Caddy", async () => {
  const server = await bootKitServer(lab, { name: "lab-smoke", env: labEnvironment(lab) });
  const result = await waitForBootstrap(server);
  lab.timings.push(`boot -> cloud-init done: ${(result.bootMs / 1000).toFixed(1)} s`);
  expect(result.status).toBe("done");
  const health = await server.http("/healthz");
  expect(health.status).toBe(200);
});
