/** Integration tests: the operations scripts against real sshd, sqlite3, Litestream and the strict lab S3 (lab/s3, a child process) on loopback. */
import unit from "./jest.config.js";

export default {
  ...unit,
  testMatch: ["<rootDir>/test/**/*.int.test.ts"],
  testPathIgnorePatterns: ["/node_modules/"],
  testTimeout: 120000,
};
