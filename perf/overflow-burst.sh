#!/usr/bin/env bash
# A burst at the default settings, `engine.overflow` = drop_newest vs block
# (README, "Overflow: block or drop"). Generates a corpus of N messages of 50
# full packets over 250 NSE instruments, replays it with `mock-exchange
# --replay` as fast as the feed reads, into `mock-kafka` (8 partitions), and
# prints the summary's received / published / dropped per run, interleaved.
#
#   perf/overflow-burst.sh [BIN] [MESSAGES] [RUNS] [DURATION_S]
#   (defaults: target/release/panda-feed 10000 3 12)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/panda-feed}"); MSGS=${2:-10000}; RUNS=${3:-3}; DUR=${4:-12}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
python3 - "$MSGS" "$W" <<'PY'
import random, struct, sys
n, w = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(15)
tokens = [((1000 + i) << 8) | 1 for i in range(250)]
with open(f"{w}/inst.csv", "w") as f:
    f.write("instrument_token,tradingsymbol,name,exchange\n")
    f.writelines(f"{t},S{i},N{i},NSE\n" for i, t in enumerate(tokens))
with open(f"{w}/full.framed", "wb") as f:
    for m in range(n):
        body = struct.pack(">H", 50)
        for k in range(50):
            p = 100000 + rnd.randrange(10000)
            pkt = struct.pack(">12I", tokens[(m * 50 + k) % 250], p, 10, p, 1000 + m, 500, 600,
                              p - 50, p + 50, p - 100, p + 100, p).ljust(184, b"\0")
            body += struct.pack(">H", 184) + pkt
        f.write(struct.pack(">I", len(body)) + body)
PY
printf '[engine]\noverflow = "drop_newest"\n' > "$W/drop_newest.toml"
printf '[engine]\noverflow = "block"\n' > "$W/block.toml"
one() {
  local policy=$1 tag=$1$2
  "$BIN" mock-kafka --topic market.ticks --partitions 8 --duration $((DUR + 15)) > "$W/k" 2>&1 & local kp=$!
  "$BIN" mock-exchange --listen 127.0.0.1:0 --replay "$W/full.framed" --duration $((DUR + 15)) > "$W/x" 2>&1 & local xp=$!
  local b x
  for _ in $(seq 100); do
    b=$(grep -oE '127\.0\.0\.1:[0-9]+' "$W/k" | head -1 || true); x=$(grep -oE '127\.0\.0\.1:[0-9]+' "$W/x" | head -1 || true)
    [ -n "$b" ] && [ -n "$x" ] && break; sleep 0.1
  done
  ZERODHA__API_KEY=mock_api_key ZERODHA__ACCESS_TOKEN=mock_access_token "$BIN" run --ws-url "ws://$x/" \
    --brokers "$b" --instruments "$W/inst.csv" --ops-listen 127.0.0.1:0 --duration "$DUR" \
    --summary "$W/s.json" --config "$W/$policy.toml" > /dev/null 2>&1
  kill $kp $xp 2>/dev/null || true; wait $kp $xp 2>/dev/null || true
  python3 - "$W/s.json" "$tag" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); c = s["connections"][0]
lost = s["dropped"] / max(s["received"], 1) * 100
print(f'{sys.argv[2]:14} received {s["received"]:>8} published {s["published"]:>8} dropped {s["dropped"]:>8} '
      f'({lost:.1f} %) identity {s["identity_holds"]} blocked_ms {c["blocked_ms"]} '
      f'block_timeouts {c["block_timeouts"]} reconnects {sum(c["reconnects"].values())}')
PY
}
for i in $(seq "$RUNS"); do one drop_newest "$i"; one block "$i"; done
