/**
 * The first-boot bundle: one bash script that writes server files, each as a quoted here-document.
 * Hetzner caps user data at 32 KiB, so the bundle does not travel in it: the stack uploads it gzip'd to the
 * environment's prefix in its backup bucket (firstBootObject), and the user data's fetcher downloads it,
 * checks its sha256 and writes it to LAYOUT.firstBootBundle, run just before the bootstrap. Decompressed,
 * it reads as the files themselves.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { LAYOUT } from "./layout.ts";
import type { ServerFile } from "./server-files.ts";

/** Ends each file's here-document; no file may hold it as a line. */
export const END_OF_FILE = "KIT_END_OF_FILE";

export function bundleScript(stackName: string, files: readonly ServerFile[]): string {
  const parts = files.map((file) => {
    if (!file.content.endsWith("\n")) throw new Error(`${file.path}: a bundled file must end with a newline`);
    if (file.content.split("\n").includes(END_OF_FILE)) throw new Error(`${file.path}: holds the line ${END_OF_FILE}`);
    return `put ${file.path} ${file.mode} <<'${END_OF_FILE}'\n${file.content}${END_OF_FILE}\n`;
  });
  return (
    `#!/bin/bash\n` +
    `# ${LAYOUT.firstBootBundle}: the server files of ${stackName}, each landing as shown, owned by root.\n` +
    `set -euo pipefail\n` +
    `put() { install -D -m "$2" /dev/stdin "\${KIT_ROOT:-}$1"; } # KIT_ROOT: tests only\n` +
    parts.join("")
  );
}

/** The first-boot bundle as the stack uploads it to the environment's own prefix in its backup bucket. */
export interface FirstBootObject {
  /** `<env prefix>/kit/first-boot/<sha256>.sh.gz`: content-addressed, so a changed bundle is a new object. */
  readonly key: string;
  /** sha256 of the script (before gzip): the user data holds it, and the fetcher runs nothing else. */
  readonly sha256: string;
  readonly script: string;
  /** The object's bytes. */
  readonly gzip: Buffer;
}

/**
 * The one source of the object's key and hash: the stack uploads this object and the lab puts the same one
 * in the lab S3. The hash is taken before gzip, so it does not depend on the zlib that compressed it.
 */
export function firstBootObject(bucketPrefix: string, stackName: string, files: readonly ServerFile[]): FirstBootObject {
  const script = bundleScript(stackName, files);
  const sha256 = createHash("sha256").update(script).digest("hex");
  return { key: firstBootKey(bucketPrefix, sha256), sha256, script, gzip: gzipSync(script, { level: 9 }) };
}

export function firstBootKey(bucketPrefix: string, sha256: string): string {
  return `${bucketPrefix}/${LAYOUT.bucket.firstBoot}/${sha256}.sh.gz`;
}
