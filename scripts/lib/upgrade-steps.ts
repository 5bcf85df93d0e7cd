/**
 * The server steps only `scripts/upgrade.ts` runs, built as data like server-steps.ts (which it uses for
 * everything a deploy also does: the push, the slot start, the switch, the stop). Binaries are staged beside
 * the live one (same directory, so the swap is a rename), checked by sha256 and by running them, and swapped
 * atomically; the live one before the swap stays as `<binary>.kit-previous`. Server files about to change are
 * copied into a directory of their own under /var/lib/kit/upgrade first, so a rollback puts back exactly what
 * was there.
 */
import { createHash } from "node:crypto";
import type { Artifact } from "../../cloud-init/artifacts.ts";
import { LAYOUT } from "../../cloud-init/layout.ts";
import type { ServerFile } from "../../cloud-init/server-files.ts";
import { afterPush, SERVER, type ServerPaths } from "./server-steps.ts";
import { bash, join, raw, step, type Step } from "./shell.ts";

/** Where an upgrade keeps the files it replaced (one directory per run; never deleted by the kit). */
export const UPGRADE_DIR = `${LAYOUT.stateDir}/upgrade`;
export const PREVIOUS_SUFFIX = ".kit-previous";

/** How each binary tells its version (the first line holds it). */
const VERSION_ARGS: Readonly<Record<string, string>> = { deno: "-V", litestream: "version" };
const versionCommand = (artifact: Pick<Artifact, "name">, path: string) => `${path} ${VERSION_ARGS[artifact.name] ?? "--version"}`;
const staged = (artifact: Artifact) => `${artifact.installPath.replace(/[^/]+$/, "")}.${artifact.name}.kit-new`;

export const sha256 = (content: string): string => createHash("sha256").update(content).digest("hex");

/**
 * Read-only: each artifact's installed version and the sha256 kit.env pins for it, which of `files` differ
 * from the server's copies (compared by sha256: a secret's content never travels for this), the security
 * updates pending in the package lists as they are.
 */
export function readFacts(artifacts: readonly Artifact[], files: readonly ServerFile[], paths: ServerPaths = SERVER): Step {
  const checks = files.map((f) => bash`same ${f.path} ${sha256(f.content)}`);
  return step(
    "read installed versions, changed files and pending updates",
    join(
      bash`. ${paths.kitEnvFile}`,
      ...artifacts.map((a) => {
        const key = a.name.toUpperCase();
        return bash`echo "version_${raw(a.name)}=$(${raw(versionCommand(a, a.installPath))} 2>/dev/null | head -n 1 || true)"
echo "sha256_${raw(a.name)}=\${${raw(key)}_SHA256:-}"`;
      }),
      bash`same() { [ "$(sha256sum 2>/dev/null <"$1" | cut -d' ' -f1)" = "$2" ] || echo "changed=$1"; }`,
      ...checks,
      bash`if ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  echo "security_updates=$(apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst ' | grep -c -i security || true)"
else echo "security_updates="; fi`,
    ),
    true,
  );
}

/**
 * Downloads the artifact, checks its sha256 against the kit's pin, unpacks it beside the live binary
 * (`.<name>.kit-new`) and runs it: it must say the pinned version. Nothing live is touched; a mismatch
 * exits 1 naming both hashes.
 */
export function stageArtifact(artifact: Artifact): Step {
  const dest = staged(artifact);
  return step(
    `download ${artifact.name} ${artifact.version}, check its sha256, stage it`,
    bash`url=${artifact.url} want=${artifact.sha256} inner=${artifact.pathInTarball} dest=${dest}
mkdir -p ${LAYOUT.runDir}
work=$(mktemp -d ${LAYOUT.runDir}/upgrade.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "kit: downloading ${artifact.name} ${artifact.version} from $url" >&2
curl --fail --silent --show-error --location --connect-timeout 10 --retry 5 --retry-delay 2 --retry-all-errors --output "$work/a.tgz" "$url"
got=$(sha256sum "$work/a.tgz" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "kit: sha256 mismatch for ${artifact.name} ${artifact.version} from $url: the kit pins $want, the download is $got (corrupt or tampered with): not installing it" >&2; exit 1; }
tar -xzf "$work/a.tgz" -C "$work" "$inner"
install -m 0755 "$work/$inner" "$dest"
said=$(${raw(versionCommand(artifact, '"$dest"'))} 2>&1 | head -n 1 || true)
case "$said" in
  *${artifact.version}*) echo "kit: staged ${artifact.name} ${artifact.version} (sha256 $want) at $dest: $said" >&2 ;;
  *) rm -f "$dest"; echo "kit: the downloaded ${artifact.name} says '$said', not ${artifact.version}: not installing it" >&2; exit 1 ;;
esac`,
  );
}

/** Removes staged binaries (a failed upgrade leaves none behind). */
export function discardStaged(artifacts: readonly Artifact[]): Step {
  return step("remove the staged binaries", bash`rm -f ${artifacts.map(staged)}`);
}

/** Swaps each staged binary in by a rename; the live one stays as `<binary>.kit-previous` (a hard link). */
export function swapArtifacts(artifacts: readonly Artifact[]): Step {
  return step(
    `swap in ${artifacts.map((a) => `${a.name} ${a.version}`).join(" and ")} (previous kept as *${PREVIOUS_SUFFIX})`,
    join(
      ...artifacts.map((a) => bash`[ -x ${staged(a)} ] || { echo "kit: ${staged(a)} is not staged" >&2; exit 1; }
if [ -e ${a.installPath} ]; then ln -f ${a.installPath} ${a.installPath + PREVIOUS_SUFFIX}; fi
mv -f ${staged(a)} ${a.installPath}
echo "kit: ${a.installPath} is now ${a.name} ${a.version}; the previous one is ${a.installPath + PREVIOUS_SUFFIX}" >&2`),
    ),
  );
}

/** Puts the `.kit-previous` binaries back, each by a rename (the rollback of swapArtifacts). */
export function restoreArtifacts(artifacts: readonly Artifact[]): Step {
  return step(
    `put back the previous ${artifacts.map((a) => a.name).join(" and ")}`,
    join(
      ...artifacts.map((a) => bash`ln -f ${a.installPath + PREVIOUS_SUFFIX} ${a.installPath}.kit-back
mv -f ${a.installPath}.kit-back ${a.installPath}
echo "kit: ${a.installPath} is the previous one again: $(${raw(versionCommand(a, a.installPath))} 2>&1 | head -n 1)" >&2`),
    ),
  );
}

/** Copies the server files at `paths` (those that exist) into a new directory under UPGRADE_DIR; prints `saved=<dir>`. */
export function saveFiles(filePaths: readonly string[]): Step {
  return step(
    `keep a copy of the ${filePaths.length} server files an upgrade may change`,
    bash`dir=${UPGRADE_DIR}/$(date -u +%Y%m%dT%H%M%SZ)-$$
install -d -m 0700 "$dir/files"
: >"$dir/absent"
for f in ${[...filePaths]}; do
  if [ -e "$f" ]; then install -d "$dir/files\${f%/*}" && cp -a "$f" "$dir/files$f"; else echo "$f" >>"$dir/absent"; fi
done
echo "kit: the server files as they were are in $dir/files" >&2
echo "saved=$dir"`,
  );
}

/**
 * Puts back the files a push changed, from saveFiles' copy (a file that did not exist before is moved into
 * the copy's directory as `<name>.added`, not deleted), then runs what their declarations say a change
 * needs (daemon-reload, Litestream's try-restart, Caddy's reload …), as the push did.
 */
export function restoreFiles(saved: string, changed: readonly ServerFile[], paths: ServerPaths = SERVER): Step {
  return step(
    `put back the ${changed.length} server files the upgrade changed`,
    join(
      bash`dir=${saved}
changed=()
for f in ${changed.map((f) => f.path)}; do
  if [ -e "$dir/files$f" ]; then cp -a "$dir/files$f" "$f.kit-restore" && mv -f "$f.kit-restore" "$f"; echo "kit: put back $f" >&2
  elif grep -qxF "$f" "$dir/absent"; then install -d "$dir/added"; mv -f "$f" "$dir/added/$(basename "$f").added"; echo "kit: $f was new: moved to $dir/added" >&2
  fi
  changed+=("$f")
done
has() { local p q; for q in "$@"; do for p in "\${changed[@]}"; do [[ $p == "$q" ]] && return 0; done; done; return 1; }`,
      bash`. ${paths.kitEnvFile}`,
      afterPush(changed),
    ),
  );
}

/**
 * Restarts Litestream when it runs (systemd stops it with SIGTERM: it uploads its pending WAL, then exits) and
 * checks it runs again; one that is not running stays off.
 */
export function restartLitestream(litestream: Pick<Artifact, "name" | "version" | "installPath">): Step {
  const unit = LAYOUT.units.litestream;
  return step(
    `restart Litestream on ${litestream.name} ${litestream.version} (it flushes its WAL on SIGTERM)`,
    bash`# Not running (a server on PostgreSQL has it off): left off; the replication check then says why.
if ! systemctl is-active --quiet ${unit}; then echo "kit: ${unit} is not running: left as it is, not started" >&2; exit 0; fi
systemctl restart ${unit}
for _ in $(seq 1 20); do systemctl is-active --quiet ${unit} && break; sleep 0.5; done
if ! systemctl is-active --quiet ${unit}; then
  echo "kit: ${unit} is not running after the restart; see: journalctl -u ${unit}" >&2; exit 1
fi
echo "kit: ${unit} runs $(${raw(versionCommand(litestream, litestream.installPath))} 2>&1 | head -n 1)" >&2`,
  );
}

/**
 * Proves replication is current: starts one watcher run now (its heartbeat row committed, then looked for in
 * the bucket) and requires its verdict, written after this step began, to say replication is ok.
 */
export function verifyReplication(): Step {
  const unit = LAYOUT.units.watch;
  return step(
    "prove replication is current (a watcher run: heartbeat row found in the bucket)",
    bash`mark=$(date -u +%s)
# A run the timer started before the mark may be the one \`start\` waits for: then one more.
for _ in 1 2; do
  systemctl start ${unit} || true
  verdict=$(cat ${LAYOUT.watchVerdictFile} 2>/dev/null || true)
  at=$( (grep -oE '"checkedAt":"[^"]+"' <<<"$verdict" || true) | cut -d'"' -f4)
  [ -n "$at" ] && [ "$(date -u -d "$at" +%s)" -ge "$mark" ] && break
done
replication=$(grep -oE '"replication":\\{"state":"[a-z]+","value":"[^"]*"' <<<"$verdict" || true)
state=$(cut -d'"' -f6 <<<"$replication") value=$(cut -d'"' -f10 <<<"$replication")
if [ -z "$at" ] || [ "$(date -u -d "$at" +%s)" -lt "$mark" ]; then
  echo "kit: the watcher wrote no verdict since the upgrade's changes (${LAYOUT.watchVerdictFile}: \${at:-none}); see: journalctl -u ${unit}" >&2; exit 1
fi
if [ "$state" != ok ]; then
  echo "kit: replication is not current after the upgrade: \${state:-unknown}: \${value:-no replication check in the verdict}" >&2; exit 1
fi
echo "kit: replication current: $value (heartbeat seen in the bucket, watcher run at $at)" >&2
echo "replication=$value"`,
  );
}

/**
 * OS security updates: refreshes the package lists and runs unattended-upgrade (Debian's security origin, as
 * the daily timer does), and says what it installed or that there was nothing to do, and whether a reboot is
 * now required (the maintenance window takes it).
 */
export function osUpdates(): Step {
  return step(
    "OS security updates (apt-get update, unattended-upgrade)",
    bash`export DEBIAN_FRONTEND=noninteractive
if ! out=$(apt-get update -q 2>&1); then
  echo "$out" | tail -n 5 >&2
  echo "kit: apt-get update failed: the package lists could not be refreshed, nothing was installed" >&2; exit 1
fi
before=$(dpkg-query -W -f '\${Package} \${Version}\\n' | sort)
if ! command -v unattended-upgrade >/dev/null; then echo "kit: unattended-upgrade is not installed (the bootstrap installs it)" >&2; exit 1; fi
log=/var/log/unattended-upgrades/unattended-upgrades.log
if ! unattended-upgrade; then
  tail -n 20 "$log" >&2 || true
  echo "kit: unattended-upgrade failed (its log: $log)" >&2; exit 1
fi
after=$(dpkg-query -W -f '\${Package} \${Version}\\n' | sort)
upgraded=$(comm -13 <(echo "$before") <(echo "$after") | wc -l)
if [ "$upgraded" = 0 ]; then echo "kit: OS updates: nothing to do (no security update pending)" >&2
else echo "kit: OS updates: $upgraded packages upgraded: $(comm -13 <(echo "$before") <(echo "$after") | cut -d' ' -f1 | head -n 20 | paste -sd ' ')" >&2; fi
if [ -e ${LAYOUT.rebootRequiredFile} ]; then echo "kit: an update requires a reboot: the maintenance window takes it (kit-maintenance-reboot.timer)" >&2; fi
echo "os_upgraded=$upgraded"`,
  );
}
