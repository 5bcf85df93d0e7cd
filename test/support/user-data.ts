/**
 * The files a first boot puts on a server, as the server gets them: entries of the user data's write_files
 * decoded, and the first-boot bundle object (what the fetcher downloads) gunzipped and run for real (bash,
 * under a temp KIT_ROOT) and read back with the modes it set.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { gunzipSync } from "node:zlib";
import { parse } from "yaml";
import type { FirstBoot } from "../../cloud-init/render.ts";

export interface LandedFile {
  readonly content: string;
  /** Octal, as cloud-init's `permissions` (e.g. "0644"). */
  readonly permissions: string;
  /** How it travels: its own write_files entry, or inside the bundle object. */
  readonly via: "entry" | "bundle";
  /** The write_files entry, for entries. */
  readonly entry?: { readonly encoding?: string; readonly defer?: boolean; readonly owner?: string };
}

/** The bundle's script as the fetcher gets it: the object's bytes gunzipped. */
export function bundleText(firstBoot: FirstBoot): string {
  return gunzipSync(firstBoot.bundle.gzip).toString("utf8");
}

export function landedFiles(firstBoot: FirstBoot): Map<string, LandedFile> {
  const files = new Map<string, LandedFile>();
  for (const entry of parse(firstBoot.userData).write_files) {
    const content = entry.encoding === "b64" ? Buffer.from(entry.content, "base64").toString("utf8") : entry.content;
    files.set(entry.path, { content, permissions: entry.permissions, via: "entry", entry });
  }
  const root = mkdtempSync(join(tmpdir(), "kit-bundle-"));
  try {
    const script = join(root, "bundle.sh");
    writeFileSync(script, bundleText(firstBoot));
    execFileSync("bash", [script], { env: { ...process.env, KIT_ROOT: join(root, "fs") } });
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)]));
    for (const path of walk(join(root, "fs"))) {
      const permissions = `0${(statSync(path).mode & 0o777).toString(8)}`;
      files.set(`/${relative(join(root, "fs"), path)}`, { content: readFileSync(path, "utf8"), permissions, via: "bundle" });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return files;
}
