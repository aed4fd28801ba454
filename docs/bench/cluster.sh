#!/usr/bin/env bash
# Cluster-mode benchmarks: `herald serve` nodes on one Redis (its own redis-server on
# 127.0.0.1:6390, so that its CPU is counted) and PostgreSQL, measured with `herald-bench`.
#
#   docs/bench/cluster.sh fanout     # 2 nodes: subscribers on node 1, publishes to node 2;
#                                    # server CPU summed over both nodes and Redis
#   docs/bench/cluster.sh idle100k   # 6 nodes, 6 generators: 100 000 idle SSE connections
#                                    # held at once (each process under 20 000 files)
#   docs/bench/cluster.sh classroom  # 2 nodes: the classroom bench (N=5000 students spread over
#                                    # both nodes, the trainer on node 1); CPU of both nodes
#                                    # and Redis
#
# Run from the repository root after `cargo build --release` (herald and herald-bench).
# Needs redis-server and a PostgreSQL that trusts local connections (PG, default the
# `test` database). Writes docs/bench/DATE-cluster-*.json and appends the summaries to
# DATE-cluster.log.
set -euo pipefail
MODE=${1:-fanout}
B=${B:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
OUT=${OUT:-docs/bench}
D=${DATE:-$(date +%F)}
LOG=${LOG:-$OUT/$D-cluster.log}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
RPORT=${RPORT:-6390}
ADMIN=bench-admin-key-0123456789abcdef0123
ulimit -n 20000
WORK=$(mktemp -d /tmp/herald-cluster.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" 2>&1 &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping > /dev/null 2>&1 && break; sleep 0.1; done

NODES=2
[ "$MODE" = idle100k ] && NODES=6
NODE_PIDS=()
for i in $(seq 1 "$NODES"); do
  mkdir -p "$WORK/node$i"
  HERALD_LOG=warn "$B" serve --listen "127.0.0.1:$((18200 + i))" --broker "redis://127.0.0.1:$RPORT" \
    --database "$PG" --admin-key "$ADMIN" --data-dir "$WORK/node$i" > "$WORK/node$i.log" 2>&1 &
  NODE_PIDS+=($!)
  PIDS+=($!)
done
for i in $(seq 1 "$NODES"); do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$((18200 + i))/readyz" > /dev/null && break
    sleep 0.1
  done
done
APP=bench$(date +%s)
RES=$(curl -sf -X POST "http://127.0.0.1:18201/v1/admin/apps" -H "authorization: Bearer $ADMIN" \
  -H 'content-type: application/json' -d "{\"name\":\"$APP\"}")
KEY=$(echo "$RES" | sed 's/.*"key":"\([^"]*\)".*/\1/')
TOKEN=$("$B" token --app "$APP" --database "$PG" --admin-key "$ADMIN" --data-dir "$WORK/node1" \
  --channel 'bench:*' --ttl 2h)
echo "# $(date -Is) cluster $MODE: $NODES nodes on Redis :$RPORT and $PG; $(nproc) cores" | tee -a "$LOG"

bench() { # NAME ARGS...
  local name=$1; shift
  # The app key is for the scenarios that publish (idle refuses flags it does not read).
  local key=(--key "$KEY"); [ "$1" = idle ] && key=()
  echo "== cluster $name: herald-bench $*" | sed 's/--token [^ ]*/--token $TOKEN/; s/--key [^ ]*/--key $KEY/' | tee -a "$LOG"
  "$BENCH" "$@" --app "$APP" --token "$TOKEN" "${key[@]}" --deadline 300s --quiet \
    > "$OUT/$D-cluster-$name.json" 2> >(tee -a "$LOG" >&2)
  sleep 2
}

case $MODE in
  fanout)
    N1=http://127.0.0.1:18201
    N2=http://127.0.0.1:18202
    ALL=(--server-pid "${NODE_PIDS[0]}" --server-pid "${NODE_PIDS[1]}" --server-pid "$RPID")
    bench idle   idle   --connections 10000 --url $N1 --server-pid "${NODE_PIDS[0]}"
    bench fanout fanout --connections 10000 --messages 200 --url $N1 --pub-url $N2 "${ALL[@]}"
    bench many   fanout --connections 10000 --channels 1000 --messages 10000 --url $N1 --pub-url $N2 "${ALL[@]}"
    bench rate   fanout --connections 10000 --messages 50 --rate 10 --url $N1 --pub-url $N2 "${ALL[@]}"
    bench publish publish --messages 20000 --channels 1000 --concurrency 16 --url $N2 \
      --server-pid "${NODE_PIDS[1]}" --server-pid "$RPID"
    ;;
  idle100k)
    PER=16667
    GEN=()
    for i in $(seq 1 "$NODES"); do
      "$BENCH" idle --connections $PER --hold 40s --url "http://127.0.0.1:$((18200 + i))" \
        --server-pid "${NODE_PIDS[$((i - 1))]}" --app "$APP" --token "$TOKEN" \
        --deadline 300s --quiet > "$OUT/$D-cluster-idle100k-$i.json" 2> "$WORK/gen$i.log" &
      GEN+=($!)
    done
    # Sample while every generator holds its connections.
    for _ in $(seq 1 120); do
      n=$( (grep -l "holding" "$WORK"/gen*.log 2> /dev/null || true) | wc -l)
      [ "$n" -ge "$NODES" ] && break
      sleep 1
    done
    sleep 3
    est=$(ss -Htn state established "( sport >= :18201 and sport <= :$((18200 + NODES)) )" | wc -l)
    pss=0
    for p in "${NODE_PIDS[@]}"; do
      kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")
      pss=$((pss + kb))
    done
    rkb=$(awk '/^Pss:/ {print $2}' "/proc/$RPID/smaps_rollup")
    for g in "${GEN[@]}"; do wait "$g" || true; done
    cat "$WORK"/gen*.log | tee -a "$LOG"
    summary="idle100k: $est connections established at once on $NODES nodes; nodes' PSS $pss KiB in all"
    summary="$summary = $(awk -v p="$pss" -v n="$est" 'BEGIN { printf "%.2f", p / (n > 0 ? n : 1) }') KiB per connection"
    summary="$summary (idle nodes included); Redis $rkb KiB"
    echo "$summary" | tee -a "$LOG"
    printf '{"connections_established":%s,"nodes":%s,"nodes_pss_kb":%s,"redis_pss_kb":%s}\n' \
      "$est" "$NODES" "$pss" "$rkb" > "$OUT/$D-cluster-idle100k.json"
    ;;
  classroom)
    N=${N:-5000}
    N1=http://127.0.0.1:18201
    N2=http://127.0.0.1:18202
    echo "== cluster classroom: herald-bench classroom --students $N --flips 20 --url $N1 --student-url $N1 --student-url $N2" | tee -a "$LOG"
    "$BENCH" classroom --students "$N" --flips 20 --url $N1 --student-url $N1 --student-url $N2 \
      --server-pid "${NODE_PIDS[0]}" --server-pid "${NODE_PIDS[1]}" --server-pid "$RPID" \
      --deadline 900s --quiet > "$OUT/$D-cluster-classroom.json" 2> >(tee -a "$LOG" >&2)
    ;;
  *) echo "usage: $0 fanout|idle100k|classroom" >&2; exit 2 ;;
esac
