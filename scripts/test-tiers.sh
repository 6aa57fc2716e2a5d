#!/usr/bin/env bash
# Run the test tiers in order (make targets), stop at the first that fails, and print each
# tier's seconds at the end: the figures the CI budget is managed with (docs/DEVELOPMENT.md).
#
#   scripts/test-tiers.sh [--prebuild "TARGET..." [--after TIER] --before TIER] TIER...
#
# --prebuild runs `make TARGET...` in the background (image builds and the lab's registry push:
# downloads, disk and one core, while the CPU-bound tiers run), started after the tier named by
# --after (at once without it) and waited for before the tier named by --before.
set -uo pipefail
cd "$(dirname "$0")/.."

prebuild="" after="" before=""
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --prebuild) prebuild=$2; shift 2 ;;
        --after) after=$2; shift 2 ;;
        --before) before=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

rows=()
status=0
total_start=$(date +%s)
pre_pid="" pre_log=""
start_prebuild() {
    [[ -n "$prebuild" ]] || return 0
    pre_log=$(mktemp /tmp/zk0-prebuild.XXXXXX.log)
    echo "building in the background: make $prebuild (log: $pre_log)"
    # shellcheck disable=SC2086  # a list of make targets
    ( start=$(date +%s); make --no-print-directory $prebuild >"$pre_log" 2>&1; rc=$?
      echo "prebuild finished: exit $rc in $(( $(date +%s) - start )) s" >>"$pre_log"; exit $rc ) &
    pre_pid=$!
}
[[ -n "$after" ]] || start_prebuild

wait_prebuild() {
    [[ -n "$pre_pid" ]] || return 0
    local start rc
    start=$(date +%s)
    wait "$pre_pid"; rc=$?
    pre_pid=""
    cat "$pre_log"
    local built
    built=$(sed -n 's/^prebuild finished: exit [0-9]* in \([0-9]*\) s$/\1/p' "$pre_log")
    rows+=("$(printf '%-18s %-7s %6d s   (background; waited %d s)' "prebuild" \
        "$([[ $rc -eq 0 ]] && echo ok || echo FAILED)" "${built:-0}" $(( $(date +%s) - start )))")
    return $rc
}

for tier in "$@"; do
    if [[ "$tier" == "$before" ]]; then
        wait_prebuild || { status=1; break; }
    fi
    start=$(date +%s)
    if make --no-print-directory "$tier"; then result=ok; else result=FAILED; status=1; fi
    rows+=("$(printf '%-18s %-7s %6d s' "$tier" "$result" $(( $(date +%s) - start )))")
    [[ $status -eq 0 ]] || break
    [[ "$tier" != "$after" ]] || start_prebuild
done
[[ -z "$pre_pid" ]] || { kill "$pre_pid" 2>/dev/null; wait "$pre_pid" 2>/dev/null; }
echo
echo "tier               result  seconds"
printf '%s\n' "${rows[@]}"
printf '%-18s %-7s %6d s\n' "total" "$([[ $status -eq 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - total_start ))
exit $status
