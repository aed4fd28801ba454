#!/usr/bin/env bash
# The classroom at scale: `herald-bench classroom` (one trainer, N guest students in one
# live session: page flips, a poll answered by all, 500 questions and 5 000 upvotes) against
# a fresh release server on SQLite, then the same page-flip traffic as raw fan-out (N SSE
# subscribers on one channel, one 100-byte message every 500 ms) on Herald's messaging API
# and on Nchan, as the transport-only reference measured in the same session.
# Run from the repository root after `cargo build --release` (herald and herald-bench). Writes
# docs/bench/DATE-classroom-*.json and a log of the summaries.
# Usage: [N=5000] docs/bench/classroom.sh
set -euo pipefail
N=${N:-5000}
B=${B:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
NCHAN=${NCHAN:-../shared/peers/nchan/start.sh}
OUT=${OUT:-docs/bench}
D=${DATE:-$(date +%F)}
LOG=$OUT/$D-classroom.log
ulimit -n 20000
echo "# $(date -Is) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), Linux $(uname -r)" | tee -a "$LOG"

# 1. The classroom.
rm -rf /tmp/hb-class && mkdir -p /tmp/hb-class
HERALD_LOG=warn "$B" serve --listen 127.0.0.1:18097 --data-dir /tmp/hb-class > /tmp/hb-class.out 2>&1 &
SPID=$!
trap 'kill $SPID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^    key:' /tmp/hb-class.out 2>/dev/null && break; sleep 0.1; done
echo "== herald-bench classroom --connections $N --messages 20 --url http://127.0.0.1:18097 --server-pid \$SPID --deadline 900s" | tee -a "$LOG"
"$BENCH" classroom --connections "$N" --messages 20 --url http://127.0.0.1:18097 --server-pid "$SPID" \
  --deadline 900s --quiet > "$OUT/$D-classroom-herald.json" 2> >(tee -a "$LOG" >&2)
KEY=$(grep '^    key:' /tmp/hb-class.out | awk '{print $2}')
TOKEN=$("$B" token --app demo --data-dir /tmp/hb-class --channel 'bench:*' --ttl 2h)

# 2. The same flips as raw fan-out: Herald's messaging API, then Nchan.
sleep 2
echo "== herald-bench fanout --connections $N --messages 20 --rate 2 (Herald, messaging API)" | tee -a "$LOG"
"$BENCH" fanout --connections "$N" --messages 20 --rate 2 --url http://127.0.0.1:18097 --token "$TOKEN" \
  --key "$KEY" --server-pid "$SPID" --deadline 300s --quiet > "$OUT/$D-classroom-flips-herald.json" 2> >(tee -a "$LOG" >&2)
kill $SPID; wait $SPID 2>/dev/null || true
"$NCHAN"
trap '"$NCHAN" --stop' EXIT
sleep 1
echo "== herald-bench fanout --connections $N --messages 20 --rate 2 (Nchan)" | tee -a "$LOG"
"$BENCH" fanout --connections "$N" --messages 20 --rate 2 --url http://127.0.0.1:8080 --pub-format raw \
  --sub-url '{url}/sse/{channel}' --server-pids-of nginx --deadline 300s --quiet \
  > "$OUT/$D-classroom-flips-nchan.json" 2> >(tee -a "$LOG" >&2)
