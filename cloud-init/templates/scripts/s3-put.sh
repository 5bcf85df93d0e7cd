#!/bin/bash
# Usage: s3-put.sh FILE KEY
# Uploads FILE to s3://$S3_BUCKET/KEY with curl's SigV4 signing (no AWS CLI needed on the server).
# Needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (from the 0600 credentials file).
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}

file=${1:?usage: s3-put.sh FILE KEY}
key=${2:?usage: s3-put.sh FILE KEY}
: "${AWS_ACCESS_KEY_ID:?missing: run with the credentials in $S3_CREDENTIALS_FILE}"
: "${AWS_SECRET_ACCESS_KEY:?missing: run with the credentials in $S3_CREDENTIALS_FILE}"

if [ -n "$S3_ENDPOINT" ]; then
  url="${S3_ENDPOINT%/}/$S3_BUCKET/$key" # S3-compatible store: path-style
else
  url="https://$S3_BUCKET.s3.$S3_REGION.amazonaws.com/$key"
fi
sha256=$(sha256sum "$file" | cut -d' ' -f1)

# The key pair reaches curl on stdin (printf is a shell builtin), never on a command line `ps` can see.
printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" |
  curl --config - --fail --silent --show-error --connect-timeout 10 --retry 3 \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --header "x-amz-content-sha256: $sha256" \
    --upload-file "$file" "$url"
echo "kit: uploaded $file to s3://$S3_BUCKET/$key"
