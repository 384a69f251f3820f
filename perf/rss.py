#!/usr/bin/env python3
"""RSS of the real `panda-feed run` process: against instrument count, and
over a soak (issue 15, item 6).

Each run starts `mock-kafka` (own process), `mock-exchange --rate R` (the
seeded generated market, own process) and `run` subscribed to N NSE
instruments in full mode (N > 3000 takes ceil(N/3000) connections), and
samples VmRSS of `run` from /proc/PID/status every --every seconds.

    # RSS vs instruments: peak and last sample of each N, one run each
    perf/rss.py --instruments 500,2000,9000 --seconds 30 --out perf/results/rss_vs_instruments.json
    # soak: 9,000 instruments at 20k ticks/s for 10 minutes, a sample every 10 s
    perf/rss.py --instruments 9000 --seconds 600 --every 10 --out perf/results/soak.json

--no-thp runs `run` with transparent huge pages disabled for it (what
mimalloc's arenas otherwise get through madvise: ~22 MiB of RSS here).

The soak's verdict: flat when the spread of the samples after the first
minute (warm-up: rings touched, librdkafka buffers grown) is within ±2 MB
(max - min ≤ 4 MB) of their median.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cost import free_port, metrics, read_line, reap, rss_kb, start, stop  # noqa: E402


def no_thp():
    """In the child before exec: transparent huge pages off for it
    (prctl PR_SET_THP_DISABLE), which mimalloc would otherwise ask for
    with madvise(MADV_HUGEPAGE) on its arenas."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")


def one(a, n, wd):
    csv = os.path.join(wd, f"instruments-{n}.csv")
    with open(csv, "w") as fh:
        fh.write("instrument_token,tradingsymbol,name,exchange,mode\n")
        for i in range(n):
            t = (100_000 + i) << 8 | 1
            fh.write(f"{t},SYM{t},SYM{t},NSE,full\n")
    token = os.path.join(wd, "token")
    with open(token, "w") as fh:
        fh.write("mock_access_token")
    broker = start([a.bin, "mock-kafka", "--partitions", "8"],
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    brokers = broker.stdout.readline().decode().strip()
    exchange = start([a.bin, "mock-exchange", "--listen", "127.0.0.1:0", "--rate", str(a.rate)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    feed = None
    drain = None
    samples = []
    try:
        line = read_line(exchange, "listening on")
        ws_url = line.split("listening on ")[1].split(" ")[0]
        drain = subprocess.Popen(["cat"], stdin=exchange.stderr, stdout=subprocess.DEVNULL)
        port = free_port()
        summary = os.path.join(wd, "summary.json")
        env = dict(os.environ, RUST_LOG="warn")
        feed = start([a.bin, "run", "--ws-url", ws_url, "--api-key", "mock_api_key",
                      "--access-token-file", token, "--instruments", csv, "--brokers", brokers,
                      "--ops-listen", f"127.0.0.1:{port}", "--redis-url", "",
                      "--summary", summary, "--duration", str(a.seconds)],
                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     preexec_fn=no_thp if a.no_thp else None)
        t0 = time.monotonic()
        ru = None
        next_at = t0
        while ru is None:
            time.sleep(0.2)
            ru = reap(feed)
            now = time.monotonic()
            if ru is None and now >= next_at:
                m = metrics(port) or {}
                kb = rss_kb(feed.pid)
                samples.append({"t_s": round(now - t0, 1), "rss_mib": round(kb / 1024, 2),
                                "received": m.get("received"), "dropped": m.get("dropped")})
                next_at += a.every
                if a.verbose:
                    print(f"  {samples[-1]}", flush=True)
    finally:
        if feed is not None and feed.returncode is None:
            feed.kill()
        stop(exchange)
        stop(broker)
        if drain is not None:
            drain.wait()
    with open(summary) as fh:
        s = json.load(fh)
    after = [x["rss_mib"] for x in samples if x["t_s"] >= min(60, a.seconds / 2)]
    med = statistics.median(after) if after else None
    return {
        "instruments": n,
        "connections": len(s.get("connections", [])),
        "rate_ticks_per_s": a.rate,
        "seconds": a.seconds,
        "received": s.get("received"),
        "published": s.get("published"),
        "dropped": s.get("dropped"),
        "identity_holds": s.get("identity_holds"),
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "last_rss_mib": samples[-1]["rss_mib"] if samples else None,
        "after_warmup": {
            "median_mib": med,
            "min_mib": min(after) if after else None,
            "max_mib": max(after) if after else None,
            "flat_within_2mb": (max(after) - med <= 2 and med - min(after) <= 2) if after else None,
        },
        "samples": samples,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", "target") + "/release/panda-feed")
    ap.add_argument("--instruments", default="500,2000,9000")
    ap.add_argument("--rate", type=int, default=20_000, help="ticks/s of the mock exchange")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between RSS samples")
    ap.add_argument("--no-thp", action="store_true",
                    help="run `run` with transparent huge pages disabled (prctl PR_SET_THP_DISABLE)")
    ap.add_argument("--out")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        raise SystemExit(f"{a.bin} not found: cargo build --release, or pass --bin")
    try:
        counts = [int(x) for x in a.instruments.split(",")]
    except ValueError:
        raise SystemExit(f"--instruments {a.instruments!r}: want N[,N...], e.g. 500,2000,9000")
    rows = []
    with tempfile.TemporaryDirectory(prefix="panda-rss-") as wd:
        for n in counts:
            r = one(a, n, wd)
            w = r["after_warmup"]
            print(f"{n:>6} instruments, {r['connections']} connection(s): peak {r['peak_rss_mib']} MiB, "
                  f"last {r['last_rss_mib']} MiB, after warm-up {w['min_mib']}..{w['max_mib']} "
                  f"(median {w['median_mib']}), received {r['received']}, dropped {r['dropped']}",
                  flush=True)
            rows.append(r)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"harness": "perf/rss.py",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "machine": f"{os.cpu_count()} cores, {os.uname().release} (shared VM)",
                       "every_s": a.every, "thp_disabled": a.no_thp, "results": rows}, fh, indent=1)
            fh.write("\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
