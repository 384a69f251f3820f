#!/usr/bin/env bash
# perf/record.sh: a CPU flamegraph of `panda-feed run` at a fixed rate
# (issue 15, item 6). Replays the full-packet corpus (perf/corpus.py) through
# `mock-exchange --replay --replay-rate` into `run` (embedded broker in its own
# process, defaults otherwise), records `run` alone with `perf record`, and
# renders perf/results/flamegraph-run-<RATE>.svg with inferno.
#
#   perf/record.sh [TICKS_PER_S=200000] [SECONDS=3]
#
# Environment: BIN (default $CARGO_TARGET_DIR/release/panda-feed), CORPUS (a
# framed full-packet corpus with CORPUS.csv; generated under $TMPDIR if
# absent), CALLGRAPH (perf's --call-graph: default dwarf,16384, because the
# release build has no frame pointers; "fp" is cheaper but shallow), INFERNO
# (directory holding inferno-collapse-perf and inferno-flamegraph; install
# with `cargo install --root DIR inferno`), RUN_ENV (extra KEY=VALUE settings
# for `run`, space separated, e.g. "KAFKA__COMPRESSION=lz4"), OUT (the SVG).
#
# Needs perf_event access: as root this works at perf_event_paranoid 2;
# otherwise `sudo sysctl kernel.perf_event_paranoid=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-200000}
SECS=${2:-3}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/panda-feed}
WORK=${TMPDIR:-/tmp}/panda-perf
CORPUS=${CORPUS:-$WORK/full.framed}
CALLGRAPH=${CALLGRAPH:-dwarf,16384}
INFERNO=${INFERNO:-$(dirname "$(command -v inferno-flamegraph || echo ./x)")}
OUT=${OUT:-perf/results/flamegraph-run-$RATE.svg}
mkdir -p "$WORK"
[ -x "$BIN" ] || { echo "record.sh: $BIN not found: cargo build --release, or set BIN" >&2; exit 1; }
[ -x "$INFERNO/inferno-flamegraph" ] || { echo "record.sh: inferno not found: cargo install --root DIR inferno, then INFERNO=DIR/bin" >&2; exit 1; }
command -v perf >/dev/null || { echo "record.sh: perf not found (apt-get install linux-perf)" >&2; exit 1; }
if [ ! -s "$CORPUS" ]; then
  python3 perf/corpus.py full --ticks 1000000 --out "$CORPUS"
fi
# 50 packets a message in the full corpus: messages/s = ticks/s / 50
MSGS=$((RATE / 50))
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
exec 3< <("$BIN" mock-kafka --partitions 8 2>/dev/null)
pids+=($!)
read -r BROKERS <&3
"$BIN" mock-exchange --listen 127.0.0.1:0 --replay "$CORPUS" --replay-rate "$MSGS" 2>"$WORK/exchange.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$WORK/exchange.log" && break; sleep 0.1; done
WS=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$WORK/exchange.log" | head -1)
echo mock_access_token >"$WORK/token"
# shellcheck disable=SC2086 # RUN_ENV is a list of KEY=VALUE words
env RUST_LOG=warn ${RUN_ENV:-} "$BIN" run --ws-url "$WS" --api-key mock_api_key \
  --access-token-file "$WORK/token" --instruments "$CORPUS.csv" --brokers "$BROKERS" \
  --ops-listen "" --redis-url "" --summary "$WORK/summary.json" --duration $((SECS + 4)) 2>/dev/null &
RUN=$!
pids+=($RUN)
sleep 1.5 # connected, subscribed, replay under way
perf record -F 1999 --call-graph "$CALLGRAPH" -p "$RUN" -o "$WORK/perf.data" -- sleep "$SECS" 2>"$WORK/perf-record.log"
wait "$RUN" || true
perf report -i "$WORK/perf.data" --no-children -g none --sort comm,dso,symbol --percent-limit 0.7 --stdio 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 >"$WORK/top.txt" || true
perf script -i "$WORK/perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" >"$WORK/folded.txt"
"$INFERNO/inferno-flamegraph" --title "panda-feed run, full-packet corpus, $RATE ticks/s, ${SECS} s" \
  <"$WORK/folded.txt" >"$OUT"
echo "wrote $OUT ($(wc -l <"$WORK/folded.txt") stacks); self time by symbol:"
cat "$WORK/top.txt"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("run summary: received", s["received"], "published", s["published"], "dropped", s["dropped"], "p50 us", s["latency_ns"]["p50"]/1000)' "$WORK/summary.json"
