#!/usr/bin/env python3
"""Latency vs rate: `panda-feed run` fed by `mock-exchange --replay` paced at
fixed rates (cost.py's run, one corpus, defaults), receive → produce-call
p50/p99 from the run's summary (`latency_ns`). Rates are interleaved: round r
runs every rate once; each run replays --seconds worth of the corpus.

    perf/sweep.py --corpus /tmp/panda-perf/full.framed --rates 10000,50000,100000,200000,400000 \\
        --runs 3 --seconds 5 --out perf/results/latency_vs_rate.json
    perf/plot.py latency perf/results/latency_vs_rate.json

The corpus must have a constant number of packets per message (the full one:
50) for the pace in messages/s to give the rate in ticks/s.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", "target") + "/release/panda-feed")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--packets", type=int, default=50, help="packets per message of the corpus")
    ap.add_argument("--rates", default="10000,50000,100000,200000,400000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--out")
    a = ap.parse_args()
    rates = [int(x) for x in a.rates.split(",")]
    opts = argparse.Namespace(bin=a.bin, partitions=8, poll_s=0.05, stall_s=5.0, max_s=600.0)
    rows = {r: [] for r in rates}
    with tempfile.TemporaryDirectory(prefix="panda-sweep-") as wd:
        cut = {r: cost.truncate(a.corpus, int(r * a.seconds), wd) for r in rates}
        for rnd in range(a.runs):
            for r in rates:
                opts.replay_rate = max(1, r // a.packets)
                path, ticks = cut[r]
                row = cost.run_once(opts, path, ticks, {}, wd)
                rows[r].append(row)
                print(f"round {rnd + 1} {r:>7} ticks/s: p50 {row['latency_us'].get('p50')} µs "
                      f"p99 {row['latency_us'].get('p99')} µs lost {row['lost']} "
                      f"cpu/M {row['cpu_s_per_million']}", flush=True)
    out = {"harness": "perf/sweep.py", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": f"{os.cpu_count()} cores, {os.uname().release} (shared VM)",
           "runs": a.runs, "seconds": a.seconds, "rates": []}
    for r, rs in rows.items():
        p50 = [x["latency_us"]["p50"] for x in rs]
        p99 = [x["latency_us"]["p99"] for x in rs]
        out["rates"].append({"ticks_per_s": r, "p50_us": statistics.median(p50),
                             "p99_us": statistics.median(p99), "p50_us_runs": p50,
                             "p99_us_runs": p99, "lost_runs": [x["lost"] for x in rs],
                             "cpu_s_per_million_runs": [x["cpu_s_per_million"] for x in rs]})
        print(f"{r:>8} ticks/s  p50 {statistics.median(p50)} µs  p99 {statistics.median(p99)} µs")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
            fh.write("\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
