/** S3's XML bodies: just enough building and reading for the operations the lab serves. */
import { xmlEscape } from "./errors.ts";

export const S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/";

type Node = string | number | boolean | undefined | Node[] | { [name: string]: Node };

/** `{ A: "x", B: [{ C: 1 }, { C: 2 }] }` → `<A>x</A><B><C>1</C></B><B><C>2</C></B>`; undefined is left out. */
export function elements(fields: Record<string, Node>): string {
  return Object.entries(fields)
    .flatMap(([name, value]) => (Array.isArray(value) ? value.map((v) => [name, v] as const) : [[name, value] as const]))
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => `<${name}>${typeof value === "object" ? elements(value as Record<string, Node>) : xmlEscape(String(value))}</${name}>`)
    .join("");
}

export function document(root: string, fields: Record<string, Node>): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${S3_NS}">${elements(fields)}</${root}>`;
}

const unescape = (text: string) =>
  text.replace(/&(lt|gt|amp|apos|quot|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) =>
    e === "lt" ? "<" : e === "gt" ? ">" : e === "amp" ? "&" : e === "apos" ? "'" : e === "quot" ? '"'
      : String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)));

/** The text of every `<name>` element directly in `xml` (no nesting of the same name in S3's inputs). */
export function all(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, "g"))].map((m) => m[1]);
}

export function text(xml: string, name: string): string | undefined {
  const found = all(xml, name)[0];
  return found === undefined ? undefined : unescape(found.trim());
}

export const iso = (d: Date) => d.toISOString();
