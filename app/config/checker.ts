import { ConfigProblem, problem } from "./errors.ts";
import { isOnCalendar } from "./on-calendar.ts";

const DURATION = /^(\d+)(s|m|h)$/;

/** Seconds in a Litestream duration such as "1s", "10m", "72h"; undefined if it is not one. */
export function durationSeconds(value: string): number | undefined {
  const match = DURATION.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

/** Collects problems for one client file; each check adds at most one problem per field. */
export class Checker {
  readonly problems: ConfigProblem[] = [];
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }

  add(path: string, message: string): void {
    this.problems.push(new ConfigProblem(this.file, path, message));
  }

  /** Fields not in `known` are almost always typos of optional fields, which would otherwise be ignored. */
  knownKeys(path: string, value: object, known: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) this.add(path ? `${path}.${key}` : key, problem.unknownKey(key, known));
    }
  }

  string(path: string, value: unknown, rule: RegExp, ruleText: string, example: string): value is string {
    if (typeof value !== "string") {
      this.add(path, value === undefined ? problem.missing(ruleText, `set it, e.g. ${JSON.stringify(example)}`) : problem.pattern(value, ruleText, example));
      return false;
    }
    if (!rule.test(value)) {
      this.add(path, problem.pattern(value, ruleText, example));
      return false;
    }
    return true;
  }

  integer(path: string, value: unknown, min: number, max: number): value is number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.add(path, problem.notInteger(value, min, max));
      return false;
    }
    return true;
  }

  boolean(path: string, value: unknown): value is boolean {
    if (typeof value === "boolean") return true;
    this.add(path, problem.notBoolean(value));
    return false;
  }

  oneOf(path: string, value: unknown, kind: string, allowed: readonly string[]): value is string {
    if (typeof value !== "string" || !allowed.includes(value)) {
      this.add(path, value === undefined ? problem.missing(kind, `set one of ${allowed.join(", ")}`) : problem.notOneOf(value, kind, allowed));
      return false;
    }
    return true;
  }

  /** A string that ends up in the server's environment files (cloud-init/template.ts `envQuote`). */
  envSafe(path: string, value: string, fix: string): boolean {
    if (!value.includes("'")) return true;
    this.add(path, problem.singleQuote(value, fix));
    return false;
  }

  onCalendar(path: string, value: unknown): void {
    if (typeof value !== "string" || !isOnCalendar(value)) this.add(path, problem.notCalendar(value));
  }

  duration(path: string, value: unknown, minSeconds: number): void {
    const seconds = typeof value === "string" ? durationSeconds(value) : undefined;
    if (seconds === undefined || seconds < minSeconds) {
      this.add(path, problem.pattern(value, `must be a duration of at least ${minSeconds}s written as <number><s|m|h>`, "1h"));
    }
  }
}
