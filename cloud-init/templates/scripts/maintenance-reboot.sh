#!/bin/bash
# Started at the maintenance window (kit-maintenance-reboot.timer: maintenance.window in the client file, UTC).
# Reboots only when an installed update needs it: unattended-upgrades' kernel hook leaves {{rebootRequiredFile}}
# (its packages in {{rebootRequiredFile}}.pkgs), or a newer kernel is installed than the one running — the two
# signs the watcher reports as "reboot required".
#
# A reboot never cuts work short: it waits, within the hour, for a deploy (its lock), the fallback backup, the
# drill and an unattended-upgrades run to finish, then takes the deploy lock itself so that no deploy starts
# while the server goes down ({{runDir}} is a tmpfs: the reboot releases it). Afterwards systemd mounts the
# volume and starts Litestream, the app and Caddy again; db-restore.service finds the database on the volume
# and restores nothing (restore-on-boot.sh).
set -euo pipefail

needed=""
if [ -e {{rebootRequiredFile}} ]; then
  needed="$(tr '\n' ' ' <{{rebootRequiredFile}}.pkgs 2>/dev/null || true)"
  needed="${needed:-an installed update}"
fi
kernels=(/boot/vmlinuz-*)
newest=$(printf '%s\n' "${kernels[@]#/boot/vmlinuz-}" | sort -V | tail -n 1)
if [ -e "/boot/vmlinuz-$newest" ] && [ "$newest" != "$(uname -r)" ]; then
  needed="${needed:+$needed; }kernel $newest (running $(uname -r))"
fi
if [ -z "$needed" ]; then
  echo "kit: maintenance window: no update needs a reboot"
  exit 0
fi
auto_reboot={{config.maintenance.autoReboot}}
if [ "$auto_reboot" != true ]; then
  echo "kit: maintenance window: a reboot is required for: $needed — but maintenance.autoReboot is false: reboot by hand (docs/runbook.md, \"The maintenance window\")"
  exit 0
fi

# What a reboot now would cut short; empty when nothing.
busy() {
  local what="" unit state
  [ -d {{deployLock}} ] && what="a deploy ({{deployLock}}: $(cat {{deployLock}}/owner 2>/dev/null || echo 'no owner note'))"
  for unit in {{fallbackBackupUnit}} {{pgDumpUnit}} {{drillUnit}} {{aptUpgradeUnit}}; do
    state=$(systemctl show --property=ActiveState --value "$unit" 2>/dev/null || echo inactive)
    case "$state" in inactive | failed | "") ;; *) what="${what:+$what, }$unit ($state)" ;; esac
  done
  echo "$what"
}

deadline=$((SECONDS + {{maintenanceWaitSeconds}}))
mkdir -p "$(dirname {{deployLock}})"
while :; do
  now_busy=$(busy)
  # The lock is an atomic mkdir, as deploy.ts takes it: whoever gets it first goes on.
  if [ -z "$now_busy" ] && mkdir {{deployLock}} 2>/dev/null; then break; fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "kit: maintenance window: a reboot is required for: $needed — but after {{maintenanceWaitSeconds}}s still busy: ${now_busy:-the deploy lock}. Not rebooting; the next window tries again." >&2
    exit 0
  fi
  echo "kit: maintenance window: waiting for ${now_busy:-the deploy lock} before rebooting"
  sleep 10
done
printf '%s\n' "maintenance reboot ({{maintenanceRebootUnit}}) since $(date -u +%Y-%m-%dT%H:%M:%SZ)" >{{deployLock}}/owner
echo "kit: maintenance window: rebooting for: $needed"
systemctl reboot
