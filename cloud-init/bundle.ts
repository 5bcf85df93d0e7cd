/**
 * The first-boot bundle: one bash script that writes server files, each as a quoted here-document, so that
 * gzip compresses all of them together (Hetzner caps user data at 32 KiB; per-file compression of small
 * files costs half of that). cloud-init writes it gzip'd to LAYOUT.firstBootBundle and runs it just before
 * the bootstrap. Decompressed, it reads as the files themselves.
 */
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
