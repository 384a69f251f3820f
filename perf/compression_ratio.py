#!/usr/bin/env python3
"""Compression ratio of panda-feed records by codec and batch size (issue 15:
when to pick a compression). Offline: records shaped like the published
envelope (the decoded ticks of perf/corpus.py's corpora, plus ~170 bytes of
envelope fields), grouped as one partition's batches (1 instrument in 8), each
batch compressed whole, as librdkafka compresses a batch. Needs a venv with
`pip install lz4 zstandard python-snappy`.

    perf/compression_ratio.py [--bin target/release/panda-feed] > perf/results/compression_ratio.txt
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib

import lz4.frame
import snappy
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", "target") + "/release/panda-feed")
    ap.add_argument("--ticks", type=int, default=20_000)
    a = ap.parse_args()
    codecs = (("lz4", lz4.frame.compress), ("snappy", snappy.compress),
              ("zstd-1", zstandard.ZstdCompressor(level=1).compress),
              ("zstd-3", zstandard.ZstdCompressor(level=3).compress),
              ("gzip-6", lambda b: zlib.compress(b, 6)))
    with tempfile.TemporaryDirectory() as wd:
        for kind in ("full", "mixed"):
            corpus = os.path.join(wd, kind)
            subprocess.run([sys.executable, os.path.join(HERE, "corpus.py"), kind, "--ticks",
                            str(a.ticks), "--out", corpus], check=True, stdout=subprocess.DEVNULL)
            out = subprocess.run([a.bin, "decode", "--framed", corpus], check=True,
                                 capture_output=True, text=True).stdout
            ticks = [t for line in out.splitlines() for t in json.loads(line)["ticks"]]
            recs = [json.dumps({"type": "market_tick", "source": "kite", "run_id": "1fa1bbf2e5bb949a",
                                "conn": 0, "seq": i, "recv_ts": "2026-11-25T20:23:39.494123Z",
                                "data": t}, separators=(",", ":")).encode()
                    for i, t in enumerate(ticks)]
            part = [r for r, t in zip(recs, ticks) if (t["instrument_token"] >> 8) % 8 == 0]
            print(f"{kind} corpus: {len(recs)} records, mean {sum(map(len, recs)) / len(recs):.0f} bytes")
            for n in (10, 100, 1000):
                cells = []
                for name, f in codecs:
                    raw = comp = 0
                    for i in range(0, len(part) - n + 1, n):
                        b = b"".join(part[i:i + n])
                        raw += len(b)
                        comp += len(f(b))
                    cells.append(f"{name} {raw / comp:.1f}x")
                print(f"  batches of {n:>4} records: " + "  ".join(cells))


if __name__ == "__main__":
    main()
