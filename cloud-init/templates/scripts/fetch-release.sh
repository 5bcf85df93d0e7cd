#!/bin/bash
# Usage: fetch-release.sh [REF]   (default: the configured ref)
# Clones the app at REF into a new release directory and prints its path on stdout (logs go to stderr).
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

ref=${1:-$APP_REF}
if [ -r "$GIT_DEPLOY_KEY_FILE" ]; then
  # Private repo: clone with the deploy key; host keys are accepted on first use, then pinned.
  export GIT_SSH_COMMAND="ssh -i $GIT_DEPLOY_KEY_FILE -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
fi

mkdir -p "$RELEASES_DIR"
incoming=$(mktemp -d "$RELEASES_DIR/.incoming.XXXXXX")
trap 'rm -rf "$incoming"' EXIT

echo "kit: fetching $APP_REPO at $ref" >&2
git clone --quiet --no-checkout "$APP_REPO" "$incoming"
# A branch name resolves on the remote (origin/<ref>); tags and commits resolve as given.
commit=$(git -C "$incoming" rev-parse --verify --quiet "origin/$ref^{commit}" ||
  git -C "$incoming" rev-parse --verify --quiet "$ref^{commit}" ||
  { echo "kit: $ref is not a branch, tag or commit of $APP_REPO" >&2; exit 1; })
git -C "$incoming" checkout --quiet --detach "$commit"

release="$RELEASES_DIR/$(date -u +%Y%m%dT%H%M%SZ)-${commit:0:12}"
chmod -R a+rX,go-w "$incoming"
mv "$incoming" "$release"
trap - EXIT
echo "kit: release $release is $commit" >&2
echo "$release"
