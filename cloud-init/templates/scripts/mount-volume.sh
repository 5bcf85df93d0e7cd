#!/bin/bash
# Waits for the data volume's device, records it in /etc/fstab and mounts it. Never formats anything:
# the cloud formats the volume when it creates it, and a device without a filesystem is left alone.
set -euo pipefail
# shellcheck source=/dev/null
. {{kitEnvFile}}
# shellcheck source=/dev/null
. "$VOLUME_ENV_FILE"

if mountpoint -q "$VOLUME_MOUNT"; then
  echo "kit: data volume already mounted at $VOLUME_MOUNT"
  exit 0
fi

waited=0
until [ -e "$VOLUME_DEVICE" ]; do
  if [ "$waited" -ge "$VOLUME_WAIT_SECONDS" ]; then
    echo "kit: data volume device $VOLUME_DEVICE did not appear within ${VOLUME_WAIT_SECONDS}s." >&2
    echo "kit: is the volume attached to this server? Nothing was started; attach it and rerun: sudo $0" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

fstype=$(blkid -o value -s TYPE "$VOLUME_DEVICE" || true)
if [ "$fstype" != "ext4" ]; then
  echo "kit: $VOLUME_DEVICE holds no ext4 filesystem (found: '${fstype:-none}'). Refusing to format it: it may hold data." >&2
  echo "kit: if it is new and empty, format it by hand (mkfs.ext4 $VOLUME_DEVICE) and rerun: sudo $0" >&2
  exit 1
fi

mkdir -p "$VOLUME_MOUNT"
if ! grep -qF " $VOLUME_MOUNT " /etc/fstab; then
  # nofail: a missing volume must not stop the server from booting (the units refuse to start instead).
  echo "$VOLUME_DEVICE $VOLUME_MOUNT ext4 defaults,nofail,discard,noatime 0 2" >>/etc/fstab
fi
mount "$VOLUME_MOUNT"
echo "kit: mounted $VOLUME_DEVICE at $VOLUME_MOUNT"
