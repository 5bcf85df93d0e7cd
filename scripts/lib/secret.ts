import { inspect } from "node:util";

/**
 * A value that must never be printed: logs, `--dry-run` plans, JSON and `util.inspect` all show `***`.
 * Only `reveal()` gives the value, and only code that hands it to a process (stdin or environment) calls it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "***";
  }

  toJSON(): string {
    return "***";
  }

  [inspect.custom](): string {
    return "Secret(***)";
  }
}

/** Replaces every revealed secret value in `text` by `***` (for error messages that echo remote output). */
export function redact(text: string, secrets: readonly Secret[]): string {
  return secrets.reduce((out, s) => (s.reveal() === "" ? out : out.split(s.reveal()).join("***")), text);
}
