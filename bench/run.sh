#!/bin/sh
# run.sh - runs every gsbench workload, one process each, and collects
# the JSON lines.
#
# Usage: bench/run.sh GSBENCH RESULTS_FILE [--quick] [--workers N] [key=value ...]
#   GSBENCH       the gsbench executable
#   RESULTS_FILE  JSON lines are appended here (and printed on stdout)
# Environment:
#   BENCH_WORKLOADS  subset of the workloads (default: all, gsbench --list:
#                    call_rtt cast_fanin cast_fanin_threads ring ring_multi
#                    pingpong spawn timers timer_guard call_timeout server_call)
#   BENCH_TIMEOUT    seconds one workload may take (default 600)
# A progress line goes to stderr as each workload starts and ends. Exits
# 1 if any workload failed its check, crashed or timed out (after running
# all of them).
set -u
gsbench=$1
results=$2
shift 2
if [ ! -x "$gsbench" ]; then
  echo "bench: $gsbench not found (make bench-build)" >&2
  exit 2
fi
workloads=${BENCH_WORKLOADS:-$("$gsbench" --list)}
limit=${BENCH_TIMEOUT:-600}
total=$(echo $workloads | wc -w)
mkdir -p "$(dirname "$results")"
echo "bench: $(nproc) CPUs,$(uptime | sed 's/.*,  *load/ load/'); results in $results" >&2

failed=0
i=0
for w in $workloads; do
  i=$((i + 1))
  echo "bench: [$i/$total] $w: started $(date +%H:%M:%S)" >&2
  t0=$(date +%s.%N)
  out=$(timeout --kill-after=10 "$limit" "$gsbench" "$w" "$@")
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  line=$(printf '%s\n' "$out" | grep '^{' | tail -n 1)
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    line="{\"runtime\":\"genserver\",\"workload\":\"$w\",\"check\":\"timeout\",\"limit_s\":$limit}"
    failed=1
  elif [ -z "$line" ]; then
    line="{\"runtime\":\"genserver\",\"workload\":\"$w\",\"check\":\"error\",\"exit\":$rc}"
    failed=1
  elif [ "$rc" -ne 0 ]; then
    failed=1
  fi
  printf '%s\n' "$line" | tee -a "$results"
  check=$(printf '%s\n' "$line" | sed -n 's/.*"check":"\([^"]*\)".*/\1/p')
  rate=$(printf '%s\n' "$line" | sed -n 's/.*"ops_per_sec":\([^,}]*\).*/\1/p')
  echo "bench: [$i/$total] $w: ${check:-?} in ${secs} s${rate:+, $rate ops/s} (exit $rc)" >&2
done
exit $failed
