#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a bounded time each, one after
# the other, and prints executions per second and findings per target.
#
#   fuzz/run.sh [seconds-per-target] [target...]     (default: 60 s, every target)
#
#   FUZZ_BUILD=ci       build with the light `dev` profile of fuzz/Cargo.toml
#                       (for CI's short runs: it builds in far less time)
#   FUZZ_TARGET_DIR=D   build in D (CI keeps it between runs on one machine)
#   FUZZ_WORK=D         libFuzzer's working corpus and logs (default fuzz/work)
#
# Installs cargo-fuzz (crates.io) when missing. Works on the stable toolchain:
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the -Z flags libFuzzer needs. Targets
# are built without a sanitizer (`-s none`, docs/decisions.md says why); the
# committed seeds in fuzz/corpus/<target> are read, never written: libFuzzer
# keeps what it learns in fuzz/work/<target>, and a
# crash leaves its input in fuzz/artifacts/<target>/. Exits 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

flags=(-s none)
if [ "${FUZZ_BUILD:-}" = ci ]; then
  flags+=(--dev)
fi
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  flags+=(--target-dir "$FUZZ_TARGET_DIR")
fi
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz targets built in $(( $(date +%s) - start )) s"

work=${FUZZ_WORK:-work}
summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "corpus/$t"
  log="$work/$t.log"
  echo "== $t: ${seconds}s"
  set +e
  # One job, one process: the machine's cores are shared. -timeout: one input
  # that takes longer is a finding (a hang); -rss_limit_mb: so is a blow-up.
  dict=()
  if [ -f "$t.dict" ]; then
    dict=(-dict="$t.dict") # the words of a format, where mutations alone rarely spell them
  fi
  cargo fuzz run "${flags[@]}" "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
  status=$?
  set -e
  runs=$(awk '/stat::number_of_executed_units/ {n = $2} END {print n}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {n = $2} END {print n}' "$log")
  cov=$(awk '{for (i = 1; i < NF; i++) if ($i == "cov:") n = $(i + 1)} END {print n}' "$log")
  if [ "$status" -ne 0 ]; then
    failed=1
    shown=$log
    [[ $log = /* ]] || shown="fuzz/$log"
    summary+=("$(printf '%-16s FINDING (exit %s): see %s and fuzz/artifacts/%s/' "$t" "$status" "$shown" "$t")")
    grep -m5 -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" || tail -20 "$log"
  else
    summary+=("$(printf '%-16s %10s runs %8s exec/s  cov %6s  no finding' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
  fi
done
echo "== fuzzing summary (${seconds}s per target, $(( $(date +%s) - start )) s in all)"
printf '%s\n' "${summary[@]}"
exit "$failed"
