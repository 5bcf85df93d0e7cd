/**
 * Volumes never shrink: synth refuses a volume.sizeGiB below the size the stack last deployed (the
 * `volume_size_gib` output in outputs/<stack>.json). Pairs: this outputs file makes synth refuse with
 * this message; the nearest valid size passes; no outputs file, no check.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../app/config/errors.ts";
import { shrinkProblems } from "../app/deployed-size.ts";
import { shippedEnvironment } from "../lab/environments.ts";

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "kit-deployed-size-"));
  mkdirSync(join(root, "outputs"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const prod = shippedEnvironment("example-prod");
const deployed = (outputs: unknown) => writeFileSync(join(root, "outputs", "example-prod.json"), JSON.stringify(outputs));
const sized = (sizeGiB: number) => ({ ...prod, volume: { sizeGiB } });

test("a size below the deployed one is refused, naming the file, the path, both sizes and the fix", () => {
  deployed({ "example-prod": { volume_size_gib: 20, ipv4: "203.0.113.7" } });
  const problems = shrinkProblems([sized(10)], root);
  expect(new ConfigError(problems).message).toBe(
    "1 problem in the client configuration (no stack was written):\n" +
      `  - ${prod.sourceFile}: environments.prod.volume.sizeGiB: 10 is smaller than the deployed volume (20 GiB, outputs/example-prod.json): ` +
      "volumes can grow but never shrink, on DigitalOcean and Hetzner alike. Fix: set it back to 20 or more (for a smaller volume, " +
      "restore into a new environment and retire this one)",
  );
  expect(shrinkProblems([sized(20)], root)).toEqual([]);
  expect(shrinkProblems([sized(40)], root)).toEqual([]);
});

test("no outputs file, an older one without volume_size_gib, or an unreadable one: nothing to compare, no problem", () => {
  expect(shrinkProblems([sized(1)], root)).toEqual([]);
  deployed({ "example-prod": { ipv4: "203.0.113.7" } });
  expect(shrinkProblems([sized(1)], root)).toEqual([]);
  writeFileSync(join(root, "outputs", "example-prod.json"), "{ not json");
  expect(shrinkProblems([sized(1)], root)).toEqual([]);
});

test("each stack is compared with its own outputs file only", () => {
  deployed({ "example-prod": { volume_size_gib: 20 } });
  const staging = shippedEnvironment("example-staging");
  expect(shrinkProblems([{ ...staging, volume: { sizeGiB: 1 } }, sized(19)], root).map(String)).toEqual([
    expect.stringContaining("environments.prod.volume.sizeGiB: 19 is smaller than the deployed volume (20 GiB"),
  ]);
});
