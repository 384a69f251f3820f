#!/usr/bin/env python3
"""Decode throughput of panda-feed vs the official parser, same corpus, same run.

    perf/decode_vs_pykite.py [--seconds 3] [--runs 3] [--messages 2000] [--packets 50]

Builds perf's decode_throughput (release), writes a seeded realistic corpus
(valid messages of --packets packets, full/quote/LTP/index mix; scripts/kitegen.py),
then measures, --runs times each, alternating:
  - pykiteconnect 5.2.2 `KiteTicker._parse_binary` over every message (ticks/s);
  - panda-feed decode → Tick, and decode → Tick → JSON (ticks/s).
Prints medians and the ratios, and saves them under perf/results/.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import kitegen  # noqa: E402

PY_BENCH = r"""
import os, sys, time, struct
os.environ["TZ"] = "UTC"; time.tzset()
from kiteconnect import KiteTicker
parse = KiteTicker("k", "t")._parse_binary
data = open(sys.argv[1], "rb").read(); msgs = []; at = 0
while at < len(data):
    (n,) = struct.unpack_from(">I", data, at); msgs.append(data[at + 4:at + 4 + n]); at += 4 + n
budget = float(sys.argv[2]); ticks = 0; t0 = time.perf_counter()
while time.perf_counter() - t0 < budget:
    for m in msgs:
        ticks += len(parse(m))
dt = time.perf_counter() - t0
print('{"ticks": %d, "seconds": %.3f, "ticks_per_s": %.0f}' % (ticks, dt, ticks / dt))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--packets", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "panda-feed-perf", "--bin", "decode_throughput"],
                   cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "decode_throughput")
    venv_py = subprocess.run([os.path.join(ROOT, "scripts", "oracle-venv")], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.framed")
        with open(corpus, "wb") as fh:
            fh.write(kitegen.framed(kitegen.realistic_corpus(args.seed, args.messages, args.packets)))
        res = {"python": [], "rust_decode": [], "rust_decode_json": []}
        for run in range(args.runs):
            py = subprocess.run([venv_py, "-c", PY_BENCH, corpus, str(args.seconds)], check=True,
                                stdout=subprocess.PIPE, text=True).stdout
            res["python"].append(json.loads(py)["ticks_per_s"])
            for key, extra in (("rust_decode", []), ("rust_decode_json", ["--json"])):
                out = subprocess.run([binary, corpus, str(args.seconds)] + extra, check=True,
                                     stdout=subprocess.PIPE, text=True).stdout
                res[key].append(json.loads(out)["ticks_per_s"])
            print("run %d: python %.0f, rust decode %.0f, rust decode+json %.0f ticks/s"
                  % (run + 1, res["python"][-1], res["rust_decode"][-1], res["rust_decode_json"][-1]))
    med = {k: statistics.median(v) for k, v in res.items()}
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": "%s, %d cpus, %s" % (platform.machine(), os.cpu_count(), platform.platform()),
        "corpus": {"seed": args.seed, "messages": args.messages, "packets_per_message": args.packets},
        "median_ticks_per_s": {k: round(v) for k, v in med.items()},
        "ratio_decode_vs_python": round(med["rust_decode"] / med["python"], 1),
        "ratio_decode_json_vs_python": round(med["rust_decode_json"] / med["python"], 1),
        "runs": res,
    }
    print(json.dumps(summary, indent=1))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "decode_vs_pykite.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
        fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
