/**
 * Growing the data volume. A larger `volume.sizeGiB` applied with `cdktf deploy` grows the block device
 * (DigitalOcean and Hetzner resize an attached volume online); the filesystem on it still has its old size
 * until something grows it. Every deploy (and `--config-only` push) does that, online: `resize2fs` on the
 * mounted ext4 (the kit's volumes are ext4: `initial_filesystem_type`/`format` in stacks/server/, and
 * mount-volume.sh mounts nothing else). Idempotent: a filesystem that already fills its device is left alone.
 *
 * Volumes never shrink (neither cloud can): a smaller sizeGiB than the deployed one is refused at synth
 * (app/deployed-size.ts, from the outputs file's `volume_size_gib`).
 */
import { bash, join, step, type Step } from "./shell.ts";
import { SERVER, type ServerPaths } from "./server-steps.ts";

/**
 * Slack between the device and the filesystem below which nothing is done: resize2fs leaves a tail too
 * small for a block group unused, and a volume grows by whole GiB.
 */
export const GROW_THRESHOLD_MIB = 16;

/**
 * Grows the filesystem at the volume's mount point to its device's size when the device is larger; says so
 * with both sizes (and the client file's sizeGiB). Prints `device_bytes=` and `filesystem_bytes=` (after).
 * A volume that is not mounted or not ext4 is named and left alone (the deploy goes on: nothing to grow).
 */
export function growFilesystem(sizeGiB: number, paths: ServerPaths = SERVER): Step {
  return step(
    "grow the volume's filesystem if the volume grew (online)",
    join(
      bash`. ${paths.kitEnvFile}`,
      bash`if ! mountpoint -q "$VOLUME_MOUNT"; then
  echo "kit: $VOLUME_MOUNT is not mounted: no filesystem to grow" >&2; exit 0
fi
dev=$(findmnt -no SOURCE --mountpoint "$VOLUME_MOUNT")
fstype=$(findmnt -no FSTYPE --mountpoint "$VOLUME_MOUNT")
if [ "$fstype" != ext4 ]; then
  echo "kit: $VOLUME_MOUNT holds $fstype, not the kit's ext4: not grown" >&2; exit 0
fi
fs_bytes() { local count size; count=$(dumpe2fs -h "$dev" 2>/dev/null | sed -n 's/^Block count: *//p'); size=$(dumpe2fs -h "$dev" 2>/dev/null | sed -n 's/^Block size: *//p'); echo $((count * size)); }
mib() { echo "$(($1 / 1048576)) MiB"; }
device=$(blockdev --getsize64 "$dev")
before=$(fs_bytes)
if [ "$device" -gt $((before + ${GROW_THRESHOLD_MIB} * 1048576)) ]; then
  echo "kit: the volume $dev is $(mib "$device") (client file: ${sizeGiB} GiB), its filesystem $(mib "$before"): growing it online (resize2fs)" >&2
  resize2fs "$dev" 2>&1 | sed 's/^/kit:   /' >&2
  after=$(fs_bytes)
  [ "$after" -gt "$before" ] || { echo "kit: resize2fs left the filesystem at $(mib "$after"); see: sudo resize2fs $dev" >&2; exit 1; }
  echo "kit: $VOLUME_MOUNT grew from $(mib "$before") to $(mib "$after") ($(df -h --output=avail "$VOLUME_MOUNT" | tail -n 1 | tr -d ' ') free)" >&2
else
  after=$before
  echo "kit: the filesystem on $VOLUME_MOUNT fills its volume ($(mib "$device"); client file: ${sizeGiB} GiB): nothing to grow" >&2
fi
echo "device_bytes=$device"
echo "filesystem_bytes=$after"`,
    ),
  );
}
