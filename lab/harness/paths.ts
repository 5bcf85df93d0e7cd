/** Paths of the repository and of the binaries the harness runs from node_modules. */
import { join } from "node:path";

import { REPO_ROOT } from "../../app/repo.ts";

export { REPO_ROOT };
/** Deno 2.9 from the `deno` npm package (the same build the servers install). */
export const DENO_BIN = join(REPO_ROOT, "node_modules/.bin/deno");
/** Litestream 0.3.13 from @flydotio/litestream-linux-x64 (the same build the servers install). */
export const LITESTREAM_BIN = join(REPO_ROOT, "node_modules/@flydotio/litestream-linux-x64/litestream");
/** The sample app that the boot tests deploy. */
export const FIXTURE_APP_DIR = join(REPO_ROOT, "test/fixtures/app");
