import { join } from "node:path";

/** The kit's checkout: every path the kit reads from its own repository starts here (one definition). */
export const REPO_ROOT = join(import.meta.dirname, "..");
