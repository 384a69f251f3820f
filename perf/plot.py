#!/usr/bin/env python3
"""PNG plots of the harness results (needs matplotlib: a venv with
`pip install matplotlib`).

    perf/plot.py latency perf/results/latency_vs_rate.json   -> perf/results/latency_vs_rate.png
    perf/plot.py rss     perf/results/rss_vs_instruments.json -> perf/results/rss_vs_instruments.png
                         (also rss_vs_instruments_nothp.json, from rss.py --no-thp)
    perf/plot.py soak    perf/results/soak.json               -> perf/results/soak.png

`latency` reads the report of perf/sweep.sh (cost.py runs at fixed rates),
`rss` and `soak` those of perf/rss.py.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def latency(d, out):
    rows = sorted(d["rates"], key=lambda r: r["ticks_per_s"])
    x = [r["ticks_per_s"] / 1000 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label, style in (("p50_us", "p50", "o-"), ("p99_us", "p99", "s-")):
        ax.plot(x, [r[key] for r in rows], style, label=label)
        for r in rows:
            for v in r[key + "_runs"]:
                ax.plot(r["ticks_per_s"] / 1000, v, ".", color="grey", alpha=0.5)
    ax.axhline(10, color="red", linestyle=":", label="target p50 ≤ 10 µs (at 50 k/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, thousand ticks/s (full-packet corpus, replayed)")
    ax.set_ylabel("receive → produce call, µs")
    ax.set_title("panda-feed run: latency vs rate (medians of %d runs; dots: runs)" % d["runs"])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def rss(d, out):
    rows = sorted(d["results"], key=lambda r: r["instruments"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = [r["instruments"] for r in rows]
    ax.plot(x, [r["peak_rss_mib"] for r in rows], "o-", label="peak RSS")
    ax.plot(x, [r["last_rss_mib"] for r in rows], "s--", label="last sample")
    ax.axhline(32 * 1e6 / 2**20, color="red", linestyle=":", label="target ≤ 32 MB (9,000 instr.)")
    for r in rows:
        ax.annotate(f"{r['peak_rss_mib']}", (r["instruments"], r["peak_rss_mib"]),
                    textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("instruments subscribed (full mode)")
    ax.set_ylabel("RSS of panda-feed run, MiB")
    ax.set_ylim(bottom=0)
    thp = ", THP off" if d.get("thp_disabled") else ""
    ax.set_title("panda-feed run: RSS vs instruments (%s ticks/s generated%s)"
                 % (rows[0]["rate_ticks_per_s"], thp))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def soak(d, out):
    r = d["results"][0]
    s = r["samples"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([x["t_s"] / 60 for x in s], [x["rss_mib"] for x in s], ".-")
    w = r["after_warmup"]
    if w["median_mib"] is not None:
        for v in (w["median_mib"] - 2 * 1e6 / 2**20, w["median_mib"] + 2 * 1e6 / 2**20):
            ax.axhline(v, color="red", linestyle=":")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS, MiB")
    thp = ", THP off" if d.get("thp_disabled") else ""
    ax.set_title("soak: %d instruments, %d ticks/s%s; dotted: median after warm-up ± 2 MB"
                 % (r["instruments"], r["rate_ticks_per_s"], thp), fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("latency", "rss", "soak"):
        raise SystemExit(__doc__)
    kind, path = sys.argv[1:]
    with open(path) as fh:
        d = json.load(fh)
    out = path.rsplit(".", 1)[0] + ".png"
    {"latency": latency, "rss": rss, "soak": soak}[kind](d, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
