#!/usr/bin/env bash
# Side-by-side fan-out benchmark: Herald, Nchan and the floor, measured with the same
# tool (`herald-bench`) and the same parameters, one server at a time, in one session.
# Run from the repository root after `cargo build --release` (herald, herald-bench and
# herald-floor); writes
# docs/bench/DATE-SERVER-SCENARIO-ROUND.json and a log of the summaries.
# Usage: [SERVERS="herald nchan floor"] [ONLY="idle fanout ..."] docs/bench/side-by-side.sh [ROUNDS] (default 2). Needs root for Nchan's
# start script (it installs nginx and libnginx-mod-nchan if missing).
set -euo pipefail
ROUNDS=${1:-2}
SERVERS=${SERVERS:-herald nchan floor}
B=${B:-target/release/herald}
BENCH=${BENCH:-target/release/herald-bench}
FLOOR=${FLOOR:-target/release/herald-floor}
NCHAN=${NCHAN:-../shared/peers/nchan/start.sh}
OUT=${OUT:-docs/bench}
D=${DATE:-$(date +%F)}
LOG=${LOG:-$OUT/$D-side-by-side.log}
N=10000
ulimit -n 20000

# Wait (at most 60 s) until the CPUs are at least 90 % idle over one second, so that
# no other work on the machine runs into a measurement; log what was seen.
busy() {
  read -r _ a b c d e f g _ < /proc/stat; sleep 1
  read -r _ A B C D E F G _ < /proc/stat
  local tot=$(( (A+B+C+D+E+F+G) - (a+b+c+d+e+f+g) )) idle=$(( D - d ))
  echo $(( 100 * (tot - idle) / (tot > 0 ? tot : 1) ))
}
wait_quiet() {
  local b
  for _ in $(seq 1 60); do b=$(busy); [ "$b" -le 10 ] && break; done
  echo "  (machine ${b}% busy before the run)" | tee -a "$LOG"
}

start_server() {
  case $1 in
    herald)
      rm -rf /tmp/hb-sbs && mkdir -p /tmp/hb-sbs
      "$B" serve --listen 127.0.0.1:18095 --data-dir /tmp/hb-sbs > /tmp/hb-sbs.out 2>&1 &
      SPID=$!
      for _ in $(seq 1 100); do grep -q '^    key:' /tmp/hb-sbs.out 2>/dev/null && break; sleep 0.1; done
      KEY=$(grep '^    key:' /tmp/hb-sbs.out | awk '{print $2}')
      TOKEN=$("$B" token --app demo --data-dir /tmp/hb-sbs --channel 'bench:*' --ttl 2h)
      TARGET=(--url http://127.0.0.1:18095 --token "$TOKEN" --server-pid "$SPID")
      PUB=(--key "$KEY")
      ;;
    nchan)
      "$NCHAN"
      TARGET=(--url http://127.0.0.1:8080 --server-pids-of nginx)
      PUB=(--pub-format raw)
      ;;
    floor)
      "$FLOOR" --listen 127.0.0.1:18096 > /tmp/floor-sbs.out 2>&1 &
      SPID=$!
      TARGET=(--url http://127.0.0.1:18096 --server-pid "$SPID")
      PUB=(--pub-format raw)
      ;;
  esac
  sleep 1
}

stop_server() {
  case $1 in
    nchan)
      "$NCHAN" --stop
      for _ in $(seq 1 100); do pgrep -x nginx > /dev/null || break; sleep 0.1; done
      ;;
    herald|floor) kill "$SPID"; wait "$SPID" || true ;;
  esac
}

# The peers' subscriber URLs; Nchan's WebSocket subscriber sends each message as a raw
# frame (no subscribe frame). Herald uses its defaults.
sub_flags() { # ARGS... (the scenario's)
  case "$srv" in
    herald) ;;
    *) case " $* " in
         *" --transport ws "*) echo "--sub-url {url}/ws/{channel} --ws-subscribe-frame none" ;;
         *" publish "*) ;;
         *) echo "--sub-url {url}/sse/{channel}" ;;
       esac ;;
  esac
}

bench() { # NAME ARGS...
  local name=$1; shift
  # ONLY="idle-ws ...": run just those (each on a freshly started server).
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local file=$OUT/$D-$srv-$name-$round.json
  # How to publish is for the scenarios that publish (idle refuses flags it does not read).
  local pub=("${PUB[@]}"); [ "$1" = idle ] && pub=()
  echo "== $srv $name round $round: herald-bench $* ${TARGET[*]} ${pub[*]} $(sub_flags "$@")" | sed 's/--token [^ ]*/--token $TOKEN/; s/--key [^ ]*/--key $KEY/' | tee -a "$LOG"
  wait_quiet
  # shellcheck disable=SC2046 # sub_flags is split on purpose
  "$BENCH" "$@" "${TARGET[@]}" "${pub[@]}" $(sub_flags "$@") --deadline 300s --quiet > "$file" 2> >(tee -a "$LOG" >&2)
  sleep 2
}

trap 'stop_server "${srv:-none}" 2>/dev/null || true' EXIT
echo "# $(date -Is) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), Linux $(uname -r)" | tee -a "$LOG"
for round in $(seq 1 "$ROUNDS"); do
  order=$SERVERS; [ $((round % 2)) -eq 0 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for srv in $order; do
    start_server "$srv"
    bench idle   idle   --connections $N
    bench fanout fanout --connections $N --messages 200
    # The floor has no channels: every frame goes to every socket.
    [ "$srv" = floor ] || bench many fanout --connections $N --channels 1000 --messages 10000
    bench rate   fanout --connections $N --messages 50 --rate 10
    # One publisher as fast as it can for 20 s: p99 latency, CPU per delivery, peak memory
    # (Herald paces it with room in its hub, then 429 + Retry-After; docs/reliability.md).
    bench sustained sustained --connections $N --duration 20s
    if [ "$srv" != floor ] && [ -z "${CORE_ONLY:-}" ]; then
      # WebSocket subscribers (the floor speaks only SSE), the publish endpoint alone,
      # connections coming and going, and everyone reconnecting at once.
      bench idle-ws   idle   --connections $N --transport ws
      bench fanout-ws fanout --connections $N --messages 200 --transport ws
      bench publish   publish --messages 20000 --channels 1000 --concurrency 16
      bench churn     churn  --connections $N --channels 100 --messages 1000 --churn-rate 1000
      bench resume    resume --connections $N --channels 100 --messages 3000 --rate 100
    fi
    stop_server "$srv"
  done
done
srv=none
