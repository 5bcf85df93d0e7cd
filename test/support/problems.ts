import { AGENCY } from "../../app/agency.ts";
import { ConfigError } from "../../app/config/errors.ts";
import { loadEnvironments } from "../../app/config/load.ts";
import type { ClientConfig } from "../../app/config/types.ts";

/** The file name validation messages use in these tests. */
export const FILE = "app/clients/acme.ts";

/** The problems synth would print for `config` (as if it were app/clients/acme.ts), one string each. */
export function problemsOf(config: ClientConfig): string[] {
  try {
    loadEnvironments(AGENCY, [{ config, file: FILE }]);
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map(String);
  }
}
