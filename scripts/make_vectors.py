#!/usr/bin/env python3
"""Writes panda-feed's reference vectors and their expected (oracle) output.

    scripts/make_vectors.py            # rewrite tests/data/vectors/
    scripts/make_vectors.py --check    # verify the committed files are what this script makes

Each NAME.bin holds one binary message built here from our own values.
expected.jsonl holds, per vector, the official parser's output (kiteconnect
5.2.2 via scripts/kite_oracle.py, TZ=UTC, sorted keys):
    {"name": "NAME.bin", "oracle": {"frame": 0, "ticks": [...]} | {"frame": 0, "error": "..."}}
tests/vectors.rs compares `panda-feed`'s decoding of every vector with it.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kitegen import be32, depth_entry, message  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "vectors")

TCS = (2953 << 8) | 1        # an NSE equity token (segment 1)
BANKNIFTY = (1026 << 8) | 9  # an index token (segment 9)
EURINR = (1700 << 8) | 3     # a CDS token (segment 3): prices / 1e7
BCD = (4242 << 8) | 6        # BSE currency: / 1e4
NCO = (99001 << 8) | 12      # NSE commodity: / 1e4 in 5.2.2
MCX = (208 << 8) | 7         # MCX: / 100


def quote(tok, ltp, ltq, atp, vol, tbq, tsq, o, h, l, c):
    return be32(tok, ltp, ltq, atp, vol, tbq, tsq, o, h, l, c)


def full(q, ltt, oi, oih, oil, ets, buy, sell):
    return q + be32(ltt, oi, oih, oil, ets) + b"".join(depth_entry(*e) for e in buy + sell)


def vectors():
    v = {}
    tcs_q = quote(TCS, 412_535, 12, 411_890, 2_345_678, 150_000, 175_500, 410_000, 413_995, 409_005, 410_860)
    buy = [(25, 412_530, 2), (100, 412_525, 4), (7, 412_500, 1), (350, 412_495, 9), (60, 412_490, 3)]
    sell = [(40, 412_535, 1), (15, 412_540, 2), (500, 412_550, 11), (90, 412_560, 4), (1200, 412_600, 21)]
    tcs_f = full(tcs_q, 1_700_031_623, 0, 0, 0, 1_700_031_624, buy, sell)
    v["ltp"] = message(be32(TCS, 412_535))
    v["full_nse"] = message(tcs_f)
    v["quote_and_full"] = message(tcs_q, tcs_f)
    idx_q = be32(BANKNIFTY, 4_412_345, 4_420_000, 4_398_760, 4_401_230, 4_405_500, (6845) & 0xFFFFFFFF)
    v["index_quote"] = message(idx_q)
    v["index_full"] = message(idx_q + be32(1_700_031_700))
    eur_q = quote(EURINR, 893_125_000, 3, 893_010_000, 5000, 700, 900, 892_500_000, 893_500_000, 892_250_000,
                  892_975_000)
    eur_f = full(eur_q, 1_700_020_000, 40_000, 41_000, 39_500, 1_700_020_001,
                 [(10 * (i + 1), 893_100_000 - 25_000 * i, i + 1) for i in range(5)],
                 [(15 * (i + 1), 893_150_000 + 25_000 * i, i + 2) for i in range(5)])
    v["cds"] = message(be32(EURINR, 893_125_000), eur_q, eur_f)
    # one LTP per segment code 1..12 plus unmapped codes 0, 13 and 255
    v["segments"] = message(*[be32((77 << 8) | seg, 123_456_789) for seg in list(range(0, 14)) + [255]])
    v["segments_named"] = message(be32(BCD, 893_125), be32(NCO, 4_567_000), be32(MCX, 6_123_400))
    v["close_zero"] = message(quote(TCS, 412_535, 1, 411_000, 10, 20, 30, 0, 0, 0, 0),
                              be32(BANKNIFTY, 4_412_345, 1, 2, 3, 0, 0, 0))
    v["cross_layout"] = message(be32(TCS, 11, 22, 33, 44, 55, 0),                # 28 B for an equity
                                quote(BANKNIFTY, 300, 0, 0, 0, 0, 0, 0, 0, 0, 150))  # 44 B for an index
    v["unknown_len"] = message(be32(TCS, 1, 2), be32(TCS, 5), be32(TCS), be32(TCS, 1, 2, 3, 4, 5, 6, 7, 8),
                               be32(TCS, 412_535))
    v["heartbeat"] = b"\x00"
    v["zero_packets"] = b"\x00\x00"
    v["zero_packets_trailing"] = b"\x00\x00\x01\x02\x03"
    v["ts_zero"] = message(full(tcs_q, 0, 0, 0, 0, 0, buy, sell), be32(BANKNIFTY, 1, 1, 1, 1, 1, 0, 0))
    v["ts_max_trailing"] = message(idx_q + be32(0xFFFFFFFF), trailing=b"junk after the last packet")
    v["high_bit"] = message(be32(TCS, 0xFFFFFFFF), be32(0xFFFFFF09, 0x80000000),
                            full(quote(TCS, *([0xFFFFFFFF] * 10)), 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF,
                                 0xFFFFFFFF, 0xFFFFFFFF, [(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF)] * 5,
                                 [(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF)] * 5))
    v["depth_padding"] = message(full(tcs_q, 1, 2, 3, 4, 5,
                                      [(1, 2, 3, b"\xff\xff")] * 5, [(4, 5, 6, b"\xab\xcd")] * 5))
    # structural defects
    v["truncated"] = message(be32(TCS, 412_535), count=3)
    v["truncated_half_prefix"] = message(be32(TCS, 412_535), count=2) + b"\x00"
    v["short_pkt"] = message(b"\x00\x01")
    v["short_pkt_zero"] = message(be32(TCS, 1), b"")
    overrun = message(be32(TCS, 412_535))
    v["overrun"] = overrun[:2] + b"\x00\xb8" + overrun[4:]  # declares 184, 8 present
    mid = message(be32(TCS, 1), be32(TCS, 2))
    # the first packet declares 12 bytes (of 8), swallowing the next prefix, so
    # the "length" read next (0x8901) overruns the message; the oracle clamps
    v["overrun_middle"] = mid[:2] + b"\x00\x0c" + mid[4:]
    v["empty"] = b""
    return v


def oracle_lines(paths):
    venv_py = subprocess.run([os.path.join(ROOT, "scripts", "oracle-venv")], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    lines = []
    for p in paths:  # one process per vector keeps frame numbers at 0
        r = subprocess.run([venv_py, os.path.join(ROOT, "scripts", "kite_oracle.py"), p],
                           stdout=subprocess.PIPE, text=True)
        if r.returncode not in (0, 2):
            sys.exit("make_vectors: oracle failed on %s" % p)
        lines.append(json.loads(r.stdout))
    return lines


def build(dest):
    os.makedirs(dest, exist_ok=True)
    names = sorted(vectors())
    vs = vectors()
    paths = []
    for name in names:
        path = os.path.join(dest, name + ".bin")
        with open(path, "wb") as fh:
            fh.write(vs[name])
        paths.append(path)
    with open(os.path.join(dest, "expected.jsonl"), "w") as fh:
        for name, line in zip(names, oracle_lines(paths)):
            fh.write(json.dumps({"name": name + ".bin", "oracle": line}, sort_keys=True) + "\n")
    return names


def main(argv):
    if "--check" not in argv:
        names = build(OUT)
        print("make_vectors: wrote %d vectors and expected.jsonl to %s" % (len(names), OUT))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        names = build(tmp)
        bad = []
        for f in [n + ".bin" for n in names] + ["expected.jsonl"]:
            try:
                same = open(os.path.join(tmp, f), "rb").read() == open(os.path.join(OUT, f), "rb").read()
            except FileNotFoundError:
                same = False
            if not same:
                bad.append(f)
        extra = sorted(set(os.listdir(OUT)) - set(os.listdir(tmp)))
        if bad or extra:
            print("make_vectors --check: out of date: %s%s; run scripts/make_vectors.py"
                  % (", ".join(bad), (" extra: " + ", ".join(extra)) if extra else ""))
            return 1
    print("make_vectors --check: %d vectors and their oracle output are up to date" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
