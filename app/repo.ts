import { join } from "node:path";

/** The kit's checkout: every path the kit reads from its own repository starts here (one definition). */
export const REPO_ROOT = join(import.meta.dirname, "..");

/** A stack's Terraform state with the local backend: at the repository's root, gitignored (it holds secrets). */
export const localStateFile = (stackName: string) => `terraform.${stackName}.tfstate`;
