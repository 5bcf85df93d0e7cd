#!/bin/bash
# The daily fallback backup, independent of Litestream: a consistent copy made with SQLite's online
# backup (never `cp` of a live database), checked with PRAGMA integrity_check, gzip'd, kept on the volume
# for FALLBACK_KEEP_DAYS days and uploaded to the bucket under its own prefix.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
"$(dirname "$0")/require-volume.sh"

if [ ! -e "$DB_FILE" ]; then
  echo "kit: no database at $DB_FILE yet; nothing to back up"
  exit 0
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="app-$stamp.sqlite3.gz"
partial="$BACKUP_DIR/.partial-$stamp.sqlite3"
trap 'rm -f "$partial" "$partial.gz"' EXIT

# Read-only: Debian's sqlite3 (3.40.1) has SQLite's WAL-reset bug, so it must not write to or checkpoint the
# live file (kit-sql.js says why); a read-only connection does neither, also when it closes.
sqlite3 -readonly -cmd '.timeout 10000' "$DB_FILE" ".backup '$partial'"
# The copy is this script's own file (read-write: its close removes the -wal/-shm it made).
check=$(sqlite3 "$partial" 'PRAGMA integrity_check;')
if [ "$check" != "ok" ]; then
  echo "kit: fallback backup failed PRAGMA integrity_check: $check" >&2
  exit 1
fi
gzip -6 "$partial"
mv "$partial.gz" "$BACKUP_DIR/$name"
echo "kit: wrote $BACKUP_DIR/$name (integrity ok)"

"$(dirname "$0")/s3-put.sh" "$BACKUP_DIR/$name" "$FALLBACK_PREFIX/$name"

# Prune only old fallback copies (never a database in use), newest always kept.
find "$BACKUP_DIR" -maxdepth 1 -name 'app-*.sqlite3.gz' -mtime +"$FALLBACK_KEEP_DAYS" ! -name "$name" -print -delete
