#!/bin/bash
# Usage: install-artifact.sh deno|litestream
# Downloads a pinned binary, checks its sha256 and installs it. A mismatch stops with the artifact's name,
# and nothing is installed.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

name=${1:?usage: install-artifact.sh deno|litestream}
case "$name" in
  deno) url=$DENO_URL sha256=$DENO_SHA256 version=$DENO_VERSION inner=$DENO_PATH_IN_TARBALL ;;
  litestream) url=$LITESTREAM_URL sha256=$LITESTREAM_SHA256 version=$LITESTREAM_VERSION inner=$LITESTREAM_PATH_IN_TARBALL ;;
  *) echo "kit: unknown artifact '$name' (deno or litestream)" >&2; exit 2 ;;
esac

mkdir -p {{runDir}}
work=$(mktemp -d {{runDir}}/install.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "kit: downloading $name $version from $url"
curl --fail --silent --show-error --location --connect-timeout 10 --retry 5 --retry-delay 2 \
  --retry-all-errors --output "$work/$name.tgz" "$url"

actual=$(sha256sum "$work/$name.tgz" | cut -d' ' -f1)
if [ "$actual" != "$sha256" ]; then
  echo "kit: sha256 mismatch for $name $version from $url" >&2
  echo "kit:   expected $sha256" >&2
  echo "kit:   got      $actual" >&2
  echo "kit: not installing $name: the download is corrupt or was tampered with. Check the URL (or mirror) and rerun: sudo $0 $name" >&2
  exit 1
fi

tar -xzf "$work/$name.tgz" -C "$work" "$inner"
install -m 0755 "$work/$inner" "{{binDir}}/$name"
echo "kit: installed $name $version (sha256 $sha256) at {{binDir}}/$name"
