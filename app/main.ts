import { App } from "cdktf";
import { join } from "node:path";
import { ClientStack } from "../stacks/client-stack.ts";
import { REPO_ROOT } from "./repo.ts";
import { AGENCY } from "./agency.ts";
import { ConfigError } from "./config/errors.ts";
import { loadClientsDir } from "./config/load.ts";
import { shrinkProblems } from "./deployed-size.ts";

/**
 * The CDKTF app: one stack per client environment found in app/clients/. Invalid configuration fails the
 * whole synth with every problem listed, and no stack is written.
 */
function main(): void {
  const root = REPO_ROOT;
  const clientsDir = process.env.KIT_CLIENTS_DIR ?? join(import.meta.dirname, "clients");
  let environments;
  try {
    environments = loadClientsDir(AGENCY, clientsDir, root);
    // Volumes never shrink: refused here, against the size each stack last deployed (its outputs file).
    const shrinks = shrinkProblems(environments, root);
    if (shrinks.length) throw new ConfigError(shrinks);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
  const app = new App();
  for (const env of environments) new ClientStack(app, { env, agency: AGENCY });
  app.synth();
}

main();
