/**
 * Boot-proof end-to-end tests (test/e2e): boot the rendered user data in systemd-nspawn machines.
 * Needs root and the host tools listed in test/e2e/README.md. Run with `npm run test:e2e` (--runInBand:
 * suites share the rootfs cache and the host's loop devices).
 */
export default {
  testEnvironment: "node",
  roots: ["<rootDir>/test/e2e"],
  testMatch: ["<rootDir>/test/e2e/**/*.e2e.test.ts"],
  transform: { "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2022" } }] },
  // A cold rootfs build (debootstrap) takes minutes; a boot that installs packages from Debian, a few more.
  testTimeout: 20 * 60_000,
};
