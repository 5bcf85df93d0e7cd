/** Unit, snapshot and static-check tests (fast; no containers). The boot tests use jest.e2e.config.js. */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["<rootDir>/test/**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "\\.e2e\\.test\\.ts$"],
  transform: { "^.+\\.ts$": ["@swc/jest", { jsc: { parser: { syntax: "typescript" }, target: "es2022" } }] },
  testTimeout: 60000,
};
