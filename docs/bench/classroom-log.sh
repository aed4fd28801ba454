#!/usr/bin/env bash
# The session log's costs (docs/benchmarks.md, "The classroom engine"), on one release
# server on SQLite:
#
#   docs/bench/classroom-log.sh cost     # N students; after the usual phases the session is
#                                        # filled to 20 polls answered by all, 500 questions,
#                                        # 5 000 upvotes; then 300 flips, upvotes and poll
#                                        # answers one at a time in it and in an empty session:
#                                        # server CPU and bytes written per change
#   docs/bench/classroom-log.sh history  # two hours of a lesson: 240 flips, 2 000 questions,
#                                        # 50 000 upvotes, 40 polls answered by all; then the
#                                        # server is restarted and the session loaded cold
#                                        # (snapshot + log) and warm; the log's size
#
# Run from the repository root after `cargo build --release` (herald and herald-bench).
# Writes docs/bench/DATE-classroom-log-MODE.json and appends to DATE-classroom-log.log.
set -euo pipefail
MODE=${1:-cost}
N=${N:-5000}
B=${B:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
OUT=${OUT:-docs/bench}
D=${DATE:-$(date +%F)}
LOG=$OUT/$D-classroom-log.log
PORT=18098
DATA=$(mktemp -d /tmp/hb-log.XXXXXX)
ulimit -n 20000
SPID=
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
start() {
  HERALD_LOG=warn "$B" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" >> "$DATA/server.out" 2>&1 &
  SPID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" > /dev/null && return; sleep 0.1; done
  echo "the server did not start" >&2; exit 1
}
echo "# $(date -Is) $MODE, $N students; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" | tee -a "$LOG"
start
case $MODE in
  cost) FILL=(--fill-polls 20 --fill-questions 500 --fill-votes 5000 --cost-changes 300) ;;
  history) FILL=(--fill-polls 40 --fill-questions 2000 --fill-votes 50000 --fill-flips 220) ;;
  *) echo "usage: $0 cost|history" >&2; exit 2 ;;
esac
echo "== herald-bench classroom --students $N --flips 20 ${FILL[*]}" | tee -a "$LOG"
"$BENCH" classroom --students "$N" --flips 20 ${EXTRA:-} "${FILL[@]}" --url http://127.0.0.1:$PORT \
  --server-pid "$SPID" --save-trainer "$DATA/trainer.json" --deadline 3600s --quiet \
  > "$OUT/$D-classroom-log-$MODE.json" 2> >(tee -a "$LOG" >&2)

if [ "$MODE" = history ]; then
  SID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['session'])" "$DATA/trainer.json")
  COOKIE=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cookie'])" "$DATA/trainer.json")
  DB=$(ls "$DATA"/*.db | head -1)
  size=$(sqlite3 "$DB" "SELECT count(*), sum(length(body)) FROM class_live_log WHERE session_id = '$SID'")
  snaps=$(sqlite3 "$DB" "SELECT count(*), max(seq), max(length(doc)) FROM class_live_snapshots WHERE session_id = '$SID'")
  kill "$SPID"; wait "$SPID" 2>/dev/null || true
  start
  get() { curl -s -o /dev/null -w '%{time_total}' -H "cookie: $COOKIE" "http://127.0.0.1:$PORT/classroom/api/sessions/$SID"; }
  cold=$(get); warm=$(get); warm2=$(get)
  echo "history: log entries, bytes: ${size/|/, }; snapshots, newest at entry, largest bytes: ${snaps//|/, }; after a restart the snapshot loads in ${cold}s cold (snapshot + log), ${warm}s and ${warm2}s warm" | tee -a "$LOG"
fi
