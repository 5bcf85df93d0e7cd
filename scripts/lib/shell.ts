import { Secret } from "./secret.ts";

/**
 * Scripts as data. A `Script` is bash text built by the `bash` tagged template: every interpolated value is
 * quoted (arrays become one quoted word each), a Secret is quoted into `text` but shows as `'***'` in
 * `display`, and a nested Script or `raw()` is inserted as it is. Builders return Scripts; the runner sends
 * `text` on stdin (never on a command line), logs and `--dry-run` show `display`.
 */
export interface Script {
  readonly text: string;
  readonly display: string;
}

/** A fragment inserted verbatim (shell syntax the builder writes itself, never user input). */
export interface Raw {
  readonly raw: string;
}

export const raw = (text: string): Raw => ({ raw: text });

export type ShellValue = string | number | Secret | Raw | Script | readonly (string | number | Secret)[];

/** POSIX single-quote quoting; plain words stay bare so the text reads well. */
export function quote(value: string): string {
  if (/^[A-Za-z0-9_\/.:=@%+,-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function render(value: ShellValue, reveal: boolean): string {
  if (Array.isArray(value)) return value.map((v) => render(v, reveal)).join(" ");
  if (value instanceof Secret) return reveal ? quote(value.reveal()) : "'***'";
  if (typeof value === "object" && "raw" in value) return value.raw;
  if (typeof value === "object" && "text" in value) return reveal ? value.text : value.display;
  return quote(String(value));
}

export function bash(strings: TemplateStringsArray, ...values: ShellValue[]): Script {
  let text = strings[0];
  let display = strings[0];
  values.forEach((value, i) => {
    text += render(value, true) + strings[i + 1];
    display += render(value, false) + strings[i + 1];
  });
  return { text, display };
}

/** Joins scripts with newlines. */
export function join(...parts: Script[]): Script {
  return { text: parts.map((p) => p.text).join("\n"), display: parts.map((p) => p.display).join("\n") };
}

/** One remote step: what it does (for progress lines) and the bash it runs, starting with `set -euo pipefail`. */
export interface Step {
  readonly title: string;
  readonly script: Script;
  /** The step only reads; safe in --dry-run. */
  readonly readOnly?: boolean;
}

export function step(title: string, body: Script, readOnly = false): Step {
  return { title, script: join(bash`set -euo pipefail`, body), readOnly };
}
