/**
 * The deploy's volume-grow step as it is sent. It runs for real (a loop-device volume grown under a booted
 * server, then deployed) in test/e2e/volume-grow.e2e.test.ts; here: shellcheck, and what it reads.
 */
import { spawnSync } from "node:child_process";
import { LAYOUT } from "../../cloud-init/layout.ts";
import { growFilesystem, GROW_THRESHOLD_MIB } from "../../scripts/lib/volume-grow.ts";

test("the step passes shellcheck as sent and reads the server's own kit.env", () => {
  const step = growFilesystem(10);
  expect(step.script.text.startsWith(`set -euo pipefail\n. ${LAYOUT.kitEnvFile}\n`)).toBe(true);
  const check = spawnSync("shellcheck", ["--shell=bash", "--exclude=SC1090,SC1091", "-"], { input: step.script.text, encoding: "utf8" });
  expect(check.stdout).toBe("");
  expect(check.status).toBe(0);
});

test("it grows the mounted filesystem online (resize2fs on the mount's device), only past the threshold, ext4 only", () => {
  const text = growFilesystem(25).script.text;
  expect(text).toContain(`dev=$(findmnt -no SOURCE --mountpoint "$VOLUME_MOUNT")`);
  expect(text).toContain(`if [ "$device" -gt $((before + ${GROW_THRESHOLD_MIB} * 1048576)) ]; then`);
  expect(text).toContain(`resize2fs "$dev"`);
  expect(text).toContain(`if [ "$fstype" != ext4 ]; then`);
  // The client file's size is named next to the device's, so a volume not yet grown by cdktf deploy shows.
  expect(text).toContain("(client file: 25 GiB)");
  // Never a filesystem tool that could shrink or recreate one.
  expect(text).not.toMatch(/mkfs|wipefs|e2fsck/);
  expect(text.match(/^\s*resize2fs .*$/gm)).toEqual([`  resize2fs "$dev" 2>&1 | sed 's/^/kit:   /' >&2`]);
});
