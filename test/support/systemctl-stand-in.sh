#!/bin/bash
# systemctl as the watcher asks it, answered from files in $SYSTEMCTL_STATE (the integration tier has no
# systemd of its own; the e2e tier runs the watcher under the real one). Strict: any other question fails.
#   $SYSTEMCTL_STATE/<unit>  lines of Key=Value (ActiveState, Result, LastTriggerUSec); no file: inactive.
set -euo pipefail
prop() { sed -n "s/^$2=//p" "$SYSTEMCTL_STATE/$1" 2>/dev/null | tail -n 1; }
case "$*" in
  "is-active "*)
    state=$(prop "$2" ActiveState)
    echo "${state:-inactive}"
    [ "$state" = active ]
    ;;
  "--failed --plain --no-legend")
    for f in "$SYSTEMCTL_STATE"/*; do
      [ "$(prop "${f##*/}" ActiveState)" != failed ] || echo "${f##*/} loaded failed failed"
    done
    ;;
  "show --timestamp=unix -p Result -p ActiveState -p LastTriggerUSec "*)
    shift 8
    for unit in "$@"; do
      result=$(prop "$unit" Result) active=$(prop "$unit" ActiveState)
      echo "Result=${result:-success}"
      echo "ActiveState=${active:-inactive}"
      [[ $unit != *.timer ]] || echo "LastTriggerUSec=$(prop "$unit" LastTriggerUSec)"
      echo
    done
    ;;
  *)
    echo "systemctl stand-in: not a question the watcher asks: systemctl $*" >&2
    exit 2
    ;;
esac
