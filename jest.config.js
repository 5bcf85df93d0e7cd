/**
 * Unit, snapshot and static-check tests: fast, no servers (`npm test`).
 * `*.int.test.ts` run real sshd, sqlite3, Litestream and an S3 server on loopback (jest.integration.config.js);
 * `*.e2e.test.ts` boot the user data in systemd containers (jest.e2e.config.js).
 */
const transform = { "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2022" } }] };

export default {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["<rootDir>/test/**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "\\.int\\.test\\.ts$", "\\.e2e\\.test\\.ts$"],
  transform,
  testTimeout: 60000,
};
