#!/usr/bin/env bash
# Run the test tiers in order (make targets), stop at the first that fails, and print each
# tier's seconds at the end: the figures the CI budget is managed with (docs/DEVELOPMENT.md).
#
#   scripts/test-tiers.sh lint test-unit test-integration ...      (what `make test` runs)
set -uo pipefail
cd "$(dirname "$0")/.."

rows=()
status=0
total_start=$(date +%s)
for tier in "$@"; do
    start=$(date +%s)
    if make --no-print-directory "$tier"; then result=ok; else result=FAILED; status=1; fi
    rows+=("$(printf '%-18s %-7s %6d s' "$tier" "$result" $(( $(date +%s) - start )))")
    [[ $status -eq 0 ]] || break
done
echo
echo "tier               result  seconds"
printf '%s\n' "${rows[@]}"
printf '%-18s %-7s %6d s\n' "total" "$([[ $status -eq 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - total_start ))
exit $status
