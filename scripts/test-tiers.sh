#!/usr/bin/env bash
# Run the test tiers in order (make targets), stop at the first that fails, and print each
# tier's seconds at the end: the figures the CI budget is managed with (docs/DEVELOPMENT.md).
#
#   scripts/test-tiers.sh lint test-unit ... a,b+c,test-lab      (what `make test` runs: TIERS)
#
# A tier written A+B runs A and B side by side (A,B+C: A then B, beside C): for tiers that
# mostly wait on Docker, image pulls and health checks (Molecule, the lab), not for those that
# need the CPU (a simulation's Ray start-up failed when an image build ran beside it). Each
# tier's output goes to its own log, printed whole once all are done, so the log reads tier by
# tier.
set -uo pipefail
cd "$(dirname "$0")/.."

rows=()
status=0
total_start=$(date +%s)

row() { rows+=("$(printf '%-22s %-7s %6d s%s' "$1" "$2" "$3" "${4:-}")"); }

run_side_by_side() {
    # "a,b+c": lane 1 runs a then b, lane 2 runs c; the lanes run at the same time.
    local group=$1 logs lanes=() pids=() start failed=0 lane name rc secs
    IFS=+ read -r -a lanes <<<"$group"
    logs=$(mktemp -d /tmp/zk0-tiers.XXXXXX)
    start=$(date +%s)
    for lane in "${lanes[@]}"; do
        echo "started side by side: make ${lane//,/ then make } (logs: $logs/)"
        (
            IFS=, read -r -a names <<<"$lane"
            for name in "${names[@]}"; do
                s=$(date +%s)
                make --no-print-directory "$name" >"$logs/$name.log" 2>&1
                rc=$?
                echo "$rc $(( $(date +%s) - s ))" >"$logs/$name.rc"
                [[ $rc -eq 0 ]] || exit "$rc"
            done
        ) &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    for lane in "${lanes[@]}"; do
        IFS=, read -r -a names <<<"$lane"
        for name in "${names[@]}"; do
            [[ -f "$logs/$name.rc" ]] || continue  # not reached: an earlier tier of its lane failed
            echo "===== make $name ====="
            cat "$logs/$name.log"
            read -r rc secs <"$logs/$name.rc"
            row "$name" "$([[ $rc -eq 0 ]] && echo ok || echo FAILED)" "$secs" "   (side by side)"
        done
    done
    row "$group" "$([[ $failed -eq 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - start )) "   (wall clock)"
    rm -rf "$logs"
    return "$failed"
}

for tier in "$@"; do
    if [[ "$tier" == *+* ]]; then
        run_side_by_side "$tier" || status=1
    else
        start=$(date +%s)
        if make --no-print-directory "$tier"; then result=ok; else result=FAILED; status=1; fi
        row "$tier" "$result" $(( $(date +%s) - start ))
    fi
    [[ $status -eq 0 ]] || break
done
echo
echo "tier                   result  seconds"
printf '%s\n' "${rows[@]}"
printf '%-22s %-7s %6d s\n' "total" "$([[ $status -eq 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - total_start ))
exit $status
