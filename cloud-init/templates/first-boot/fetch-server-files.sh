#!/bin/bash
# {{firstBootFetcher}}: the first boot of {{stackName}} (cloud-init's runcmd), before anything else of the kit.
# Downloads the server files — one script, {{firstBootBundle}} once checked — that the stack uploaded gzip'd
# to s3://{{bucket}}/{{firstBootKey}}, with the backup key over TLS; runs nothing whose sha256 differs from
# the one below (written into this user data by the same stack).
set -euo pipefail
# shellcheck source=/dev/null
. {{s3CredentialsFile}}
bucket={{bucket}} key={{firstBootKey}} region={{region}} endpoint={{s3Endpoint}}
want={{firstBootSha256}}
url=https://$bucket.s3.$region.amazonaws.com/$key
[ -z "$endpoint" ] || url=${endpoint%/}/$bucket/$key # S3-compatible store: path-style
object=s3://$bucket/$key
mkdir -p {{runDir}}
gz={{runDir}}/server-files.sh.gz got={{runDir}}/server-files.sh.unchecked headers={{runDir}}/fetch.headers
say() { echo "kit-first-boot: $*" >&2; }

# A new IAM key takes a few seconds to be accepted everywhere, and the network may come up late: try for
# {{firstBootFetchSeconds}} s, waiting longer each time.
deadline=$((SECONDS + {{firstBootFetchSeconds}})) pause=2 tries=0
while :; do
  tries=$((tries + 1))
  # The key pair reaches curl on stdin (printf is a builtin), never on a command line `ps` can see.
  # (The status is read from the headers: curl's --write-out syntax would be a Terraform template directive.)
  rm -f "$headers"
  printf 'user = "%s:%s"\n' "${AWS_ACCESS_KEY_ID:-}" "${AWS_SECRET_ACCESS_KEY:-}" |
    curl -K - -sS --connect-timeout 10 -m 120 --aws-sigv4 "aws:amz:$region:s3" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -D "$headers" -o "$gz" "$url" 2>{{runDir}}/fetch.err || true
  status=$(head -n 1 "$headers" 2>/dev/null | tr -d '\r' | cut -d' ' -f2) || status=000
  [ "$status" = 200 ] && break
  # Why: S3's error code from its XML answer, or curl's own message (no answer at all).
  if [ "${status:-000}" != 000 ]; then
    code=$(grep -o '<Code>[^<]*' "$gz" 2>/dev/null | head -n 1 | cut -c7-) || true
    why="HTTP $status${code:+, S3 error $code}"
  else
    why=$(tail -n 1 {{runDir}}/fetch.err)
  fi
  if [ $((SECONDS + pause)) -gt "$deadline" ]; then
    say "FAILED: could not download $object after $tries tries in {{firstBootFetchSeconds}} s: $why."
    say "Nothing of the kit was installed. Check that \`cdktf deploy\` uploaded it (aws s3api head-object --bucket $bucket --key $key),"
    say "that {{s3CredentialsFile}} holds the stack's current backup key and that this server reaches S3 over HTTPS;"
    say "then run the first boot again: sudo sh /var/lib/cloud/instance/scripts/runcmd"
    exit 1
  fi
  say "$object: $why; trying again in $pause s"
  sleep "$pause"
  pause=$((pause < 30 ? pause * 2 : 30))
done

# Checked before anything reads it as a script. gunzip's output is capped: a bad object must not fill /run.
if ! gunzip -c "$gz" | head -c 16777216 >"$got"; then
  say "REFUSED $object: not a gzip file. Nothing from it ran."
  exit 1
fi
sum=$(sha256sum "$got" | cut -d' ' -f1)
if [ "$sum" != "$want" ]; then
  say "REFUSED $object: its content's sha256 is $sum, this server's user data expects $want. Nothing from it ran."
  say "The object was changed after the stack uploaded it: find out by whom (the bucket is versioned:"
  say "aws s3api list-object-versions --bucket $bucket --prefix $key), put its first version back, then run the"
  say "first boot again: sudo sh /var/lib/cloud/instance/scripts/runcmd"
  exit 1
fi
mv "$got" {{firstBootBundle}}
chmod 0700 {{firstBootBundle}}
rm -f "$gz"
echo "kit-first-boot: $object matches its sha256 $want: $(wc -c <{{firstBootBundle}}) bytes of server files"
