#!/usr/bin/env bash
# What the embedded broker's history journal costs in publish throughput
# (docs/benchmarks.md, "History that survives a restart"): the same release binary with
# `--broker memory` (no journal: the engine before the journal) and `--broker embedded`
# (the default, history journaled in the data dir), runs alternated, each twice:
#
#   publish, 1 000 channels, 32 concurrent publishers, 40 000 messages  (group commit)
#   publish, 1 channel, 1 publisher (one at a time), 10 000 messages  (no batching possible)
#
#   docs/bench/journal.sh pairs c1|c32   # instead: 8 pairs of shorter runs (5 000 and 20 000
#                                        # messages), memory and embedded next to each other,
#                                        # the order alternating, with each pair's ratios: the
#                                        # load of a shared machine changes less within a pair
#
# Run from the repository root after `cargo build --release` (herald and herald-bench).
# Writes docs/bench/DATE-journal-BROKER-SCENARIO-RUN.json and appends to DATE-journal.log.
set -euo pipefail
B=${B:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
OUT=${OUT:-docs/bench}
D=${DATE:-$(date +%F)}
LOG=$OUT/$D-journal.log
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
SPID=
DATA=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null || true; [ -n "$DATA" ] && rm -rf "$DATA"; true; }
trap cleanup EXIT
start() { # BROKER
  DATA=$(mktemp -d /tmp/hb-journal.XXXXXX)
  HERALD_LOG=warn "$B" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" --broker "$1" > "$DATA/server.out" 2>&1 &
  SPID=$!
  for _ in $(seq 1 100); do grep -q '^    key:' "$DATA/server.out" && break; sleep 0.1; done
  kill -0 "$SPID" || { cat "$DATA/server.out" >&2; exit 1; }
  KEY=$(grep '^    key:' "$DATA/server.out" | awk '{print $2}')
}
stop() {
  kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
  rm -rf "$DATA"; DATA=
}
if [ "${1:-}" = pairs ]; then
  scenario=${2:-c1}
  case $scenario in
    c1) ARGS=(--messages 5000 --channels 1 --concurrency 1) ;;
    c32) ARGS=(--messages 20000 --channels 1000 --concurrency 32) ;;
    *) echo "usage: $0 [pairs c1|c32]" >&2; exit 2 ;;
  esac
  one() { # BROKER -> "publishes/s cpu-µs"
    start "$1"
    "$BENCH" publish --url http://127.0.0.1:$PORT --key "$KEY" --server-pid "$SPID" "${ARGS[@]}" --quiet \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print(r['publishes_per_second'], r['server_cpu_seconds']/r['messages']*1e6)"
    stop
  }
  echo "# $(date -Is) pairs $scenario; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
  for i in 1 2 3 4 5 6 7 8; do
    if [ $((i % 2)) = 1 ]; then m=$(one memory); e=$(one embedded); else e=$(one embedded); m=$(one memory); fi
    python3 -c "
import sys
m, mc, e, ec = map(float, sys.argv[2:6])
print(f'pair {sys.argv[1]} {sys.argv[6]}: memory {m:.0f}/s {mc:.1f} µs | embedded {e:.0f}/s {ec:.1f} µs | throughput ratio {e/m:.2f}, CPU ratio {ec/mc:.2f}')
" "$i" $m $e "$scenario" | tee -a "$LOG"
  done
  exit 0
fi
echo "# $(date -Is) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
for run in 1 2; do
  for broker in memory embedded; do
    for scenario in c32 c1; do
      start "$broker"
      case $scenario in
        c32) ARGS=(--messages 40000 --channels 1000 --concurrency 32) ;;
        c1) ARGS=(--messages 10000 --channels 1 --concurrency 1) ;;
      esac
      f="$OUT/$D-journal-$broker-$scenario-$run.json"
      "$BENCH" publish --url http://127.0.0.1:$PORT --key "$KEY" --server-pid "$SPID" "${ARGS[@]}" --quiet > "$f"
      journal=$(du -sb "$DATA/history" 2>/dev/null | cut -f1 || echo 0)
      python3 - "$f" "$broker" "$scenario" "$run" "$journal" <<'PY' | tee -a "$LOG"
import json, sys
r = json.load(open(sys.argv[1]))
cpu = r.get("server_cpu_seconds")
per = f"{cpu / r['messages'] * 1e6:.1f} µs" if cpu else "?"
print(f"{sys.argv[2]:8} {sys.argv[3]:3} run {sys.argv[4]}: {r['publishes_per_second']:8.0f} publishes/s, "
      f"server CPU per publish {per}, errors {r['errors']}, history dir {int(sys.argv[5]) // 1024} KiB")
PY
      stop
    done
  done
done
