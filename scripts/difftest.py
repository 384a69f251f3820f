#!/usr/bin/env python3
"""Differential test: `panda-feed decode --framed` against the official parser.

    scripts/difftest.py [--seeds 1,2,3] [--messages 20000] [--bin target/debug/panda-feed] [--keep DIR]

For each seed, a seeded generator (scripts/kitegen.py) writes a framed corpus of
random messages (all packet kinds, random segments, extreme values and every
malformed class); both decoders read it; every frame is compared:
  - every key of every oracle tick equal (numbers as f64 and int-vs-float kind,
    naive-UTC timestamps as RFC 3339 "Z", the raw-0 epoch as null);
  - every message the oracle rejects is an error for us too;
  - every message with an overrunning packet is an error for us.
Exit status 1 on any disagreement (the first few are printed), 0 otherwise.
Needs the oracle venv (scripts/oracle-venv), hence PyPI on first use.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import kitegen  # noqa: E402


def run_lines(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 2):
        sys.exit("difftest: %s exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return [json.loads(l) for l in r.stdout.splitlines()]


def one_seed(seed, n, binary, venv_py, keep):
    t0 = time.monotonic()
    corpus = kitegen.corpus(seed, n)
    tmp = keep or tempfile.mkdtemp(prefix="panda-difftest-")
    os.makedirs(tmp, exist_ok=True)
    path = os.path.join(tmp, "corpus-%d.framed" % seed)
    with open(path, "wb") as fh:
        fh.write(kitegen.framed(m for _, m in corpus))
    ours = run_lines([binary, "decode", "--framed", path])
    oracle = run_lines([venv_py, os.path.join(HERE, "kite_oracle.py"), "--framed", path])
    if not (len(ours) == len(oracle) == n):
        return ["seed %d: %d messages, ours printed %d lines, oracle %d" % (seed, n, len(ours), len(oracle))], {}
    bad, stats = [], collections.Counter()
    for i, ((cls, msg), a, b) in enumerate(zip(corpus, ours, oracle)):
        stats[cls] += 1
        if "ticks" in b:
            stats["oracle ticks"] += len(b["ticks"])
        if "error" in b:
            stats["oracle errors"] += 1
        if a.get("frame") != i or b.get("frame") != i:
            bad.append("seed %d frame %d: frame numbers out of step" % (seed, i))
            break
        why = kitegen.compare(a, b, cls)
        if why:
            bad.append("seed %d frame %d (%s, %d bytes %s...): %s"
                       % (seed, i, cls, len(msg), msg[:24].hex(), why))
    stats["seconds"] = round(time.monotonic() - t0, 1)
    if not keep:
        os.remove(path)
        os.rmdir(tmp)
    return bad, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "panda-feed"))
    ap.add_argument("--keep", help="keep corpora in this directory")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit("difftest: %s is not an executable; build it first (cargo build) or pass --bin" % args.bin)
    venv_py = subprocess.run([os.path.join(HERE, "oracle-venv")], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.strip()
    failed = False
    for seed in [int(s) for s in args.seeds.split(",") if s]:
        bad, stats = one_seed(seed, args.messages, args.bin, venv_py, args.keep)
        summary = ", ".join("%s=%s" % kv for kv in sorted(stats.items()))
        print("difftest seed %d: %d messages, %s, %s" % (seed, args.messages, summary,
                                                        "%d DISAGREEMENTS" % len(bad) if bad else "agree"))
        for line in bad[:10]:
            print("  " + line)
        failed |= bool(bad)
    print("difftest: %s" % ("FAILED" if failed else "all seeds agree with kiteconnect 5.2.2"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
