#!/usr/bin/env python3
"""Cost harness: CPU seconds per million ticks of the real `panda-feed run`
process, by thread, next to throughput and loss (issue 15, item 1).

Each run starts three processes of the release binary:
  mock-kafka                      the embedded Kafka-protocol broker (own process,
                                  so its CPU is not counted against `run`)
  mock-exchange --replay CORPUS   replays the framed corpus to the feed, as fast
                                  as it reads or at --replay-rate messages/s
  run                             the feed, with the corpus's instruments CSV,
                                  --ops-listen on a free port, --summary FILE
The harness polls the run's /metrics until every tick of the corpus is
accounted for (published + dropped + parked = corpus ticks) or nothing moves
for --stall-s, snapshots /proc/PID/task/*/stat (CPU by thread name), sends
SIGINT (the graceful drain), and takes the child's user + sys CPU from
wait4's rusage: the whole process, start-up and drain included.

CPU per million ticks is over ticks published (delivered; with the blackhole
sink, encoded and discarded): a tick dropped at a full ring costs little and
is not a tick delivered. Throughput = ticks received / (last tick accounted - first tick received).
Loss = corpus ticks - published (drops and parks are in the summary too).
Runs of different configurations are interleaved (round r runs every
configuration once), and the report gives each run and the median.

    perf/cost.py --corpus full=/tmp/full.framed --corpus mixed=/tmp/mixed.framed \\
        --config defaults --config blackhole:KAFKA__SINK=blackhole \\
        --config none:KAFKA__COMPRESSION=none --runs 3 --out perf/results/cost.json

A --config is NAME[:KEY=VALUE,...]: environment overrides for `run` (every
config key as SECTION__KEY, README "Settings"), and two keys of the harness:
BIN=PATH runs another build of panda-feed for this configuration (e.g. one
built with another librdkafka feature), CONFIG=FILE passes `run --config FILE`
(for what the environment cannot set, like [kafka.extra]). The corpus CSV is CORPUS.csv
(perf/corpus.py writes both). Tolerant of new summary keys: it reads only
received/published/dropped/parked/identity_holds/latency_ns.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus_ticks(path):
    """Ticks in a framed corpus: the u16 packet count of every message."""
    n = 0
    with open(path, "rb") as fh:
        while True:
            head = fh.read(4)
            if len(head) < 4:
                return n
            length = int.from_bytes(head, "big")
            body = fh.read(length)
            if length >= 2:
                n += int.from_bytes(body[:2], "big")


def truncate(path, ticks, workdir):
    """A copy of the corpus's first messages holding at least `ticks` ticks
    (and its CSV), for runs shorter than the whole corpus."""
    out = os.path.join(workdir, os.path.basename(path) + f".{ticks}")
    n = 0
    with open(path, "rb") as src, open(out, "wb") as dst:
        while n < ticks:
            head = src.read(4)
            if len(head) < 4:
                break
            body = src.read(int.from_bytes(head, "big"))
            dst.write(head + body)
            n += int.from_bytes(body[:2], "big") if len(body) >= 2 else 0
    if not os.path.exists(out + ".csv"):
        os.symlink(os.path.abspath(path + ".csv"), out + ".csv")
    return out, n


def threads(pid):
    """{thread name: CPU seconds (user + sys)} of the live threads of pid."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK  # utime, stime
        out[name] = out.get(name, 0.0) + cpu
    return out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metrics(port):
    """The run's counters from /metrics (None while it is not serving)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    want = {
        "panda_feed_ticks_received_total": "received",
        "panda_feed_ticks_published_total": "published",
        "panda_feed_ticks_dropped_total": "dropped",
        "panda_feed_ticks_parked_total": "parked",
    }
    out = dict.fromkeys(want.values(), 0)
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in want:
            out[want[name]] += int(float(line.rsplit(" ", 1)[1]))
    return out


def reap(proc):
    """The rusage of proc if it has exited (reaping it), else None."""
    pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru


def start(cmd, env=None, **kw):
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, **kw)


def read_line(proc, prefix, timeout=30):
    """The first line of proc's stderr containing prefix (other lines dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if not line:
            raise RuntimeError(f"process exited before printing {prefix!r}")
        if prefix in line:
            return line
    raise RuntimeError(f"no {prefix!r} within {timeout} s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(a, corpus, ticks, env_over, workdir):
    """One run of `panda-feed run` against a replay; returns its row."""
    env_over = dict(env_over)
    bin_ = env_over.pop("BIN", a.bin)
    config = env_over.pop("CONFIG", None)
    broker = start([bin_, "mock-kafka", "--partitions", str(a.partitions)],
                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    brokers = broker.stdout.readline().decode().strip()
    ex_cmd = [bin_, "mock-exchange", "--listen", "127.0.0.1:0", "--replay", corpus,
              "--heartbeat-ms", "1000"]
    if a.replay_rate:
        ex_cmd += ["--replay-rate", str(a.replay_rate)]
    exchange = start(ex_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    feed = None
    drain = None
    try:
        line = read_line(exchange, "listening on", timeout=120)
        ws_url = line.split("listening on ")[1].split(" ")[0]
        # the exchange's status lines are not read any more: drain them to /dev/null
        drain = subprocess.Popen(["cat"], stdin=exchange.stderr, stdout=subprocess.DEVNULL)
        token = os.path.join(workdir, "token")
        with open(token, "w") as fh:
            fh.write("mock_access_token")
        summary = os.path.join(workdir, "summary.json")
        if os.path.exists(summary):
            os.remove(summary)
        port = free_port()
        env = dict(os.environ)
        # /metrics shows the ops side's samples: sample every 50 ms (not the
        # default 1 s) so the harness sees when the last tick is accounted for
        env.update({"RUST_LOG": "warn", "OPS__SAMPLE_MS": "50"})
        env.update(env_over)
        feed = start([bin_, "run", "--ws-url", ws_url, "--api-key", "mock_api_key",
                      "--access-token-file", token, "--instruments", corpus + ".csv",
                      "--brokers", brokers, "--ops-listen", f"127.0.0.1:{port}",
                      "--redis-url", "", "--summary", summary, "--duration", str(a.max_s)]
                     + (["--config", config] if config else []),
                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        first = last = None
        last_seen, moved = -1, t0
        peak_rss = 0
        by_thread = {}
        ru = None
        while True:
            time.sleep(a.poll_s)
            now = time.monotonic()
            ru = reap(feed)
            if ru is not None:
                break
            peak_rss = max(peak_rss, rss_kb(feed.pid))
            m = metrics(port)
            if m is None:
                if now - t0 > 30:
                    break
                continue
            if m["received"] and first is None:
                first = now
            done = m["published"] + m["dropped"] + m["parked"]
            if done != last_seen:
                last_seen, moved, last = done, now, now
                by_thread = threads(feed.pid)
            if done >= ticks or (first and now - moved > a.stall_s):
                by_thread = threads(feed.pid)
                break
        if ru is None:
            feed.send_signal(signal.SIGINT)  # the graceful drain
            deadline = time.monotonic() + 60
            while ru is None:
                time.sleep(0.02)
                ru = reap(feed)
                if ru is None and time.monotonic() > deadline:
                    feed.kill()
        cpu = ru.ru_utime + ru.ru_stime
        peak_rss = max(peak_rss, ru.ru_maxrss)
    finally:
        if feed is not None and feed.returncode is None:
            try:
                feed.kill()
            except ProcessLookupError:
                pass
        stop(exchange)
        stop(broker)
        if drain is not None:
            drain.wait()
    try:
        with open(summary) as fh:
            s = json.load(fh)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{bin_} run exited with status {feed.returncode} and no summary ({e}): "
                         f"run it by hand with the same settings to see why")
    span = (last - first) if first and last and last > first else None
    received = s.get("received", 0)
    published = s.get("published") or 0
    lat = s.get("latency_ns", {})
    counted = sum(by_thread.values())
    groups = {}
    for name, v in by_thread.items():
        key = name.rstrip("0123456789").rstrip("-:") if name.startswith("rdk:") else name
        groups[key] = round(groups.get(key, 0.0) + v, 3)
    if cpu is not None:
        groups["(start-up, drain, exited threads)"] = round(max(cpu - counted, 0.0), 3)
    return {
        "ticks": ticks,
        "received": received,
        "published": s.get("published"),
        "dropped": s.get("dropped"),
        "parked": s.get("parked"),
        "lost": ticks - (s.get("published") or 0),
        "identity_holds": s.get("identity_holds"),
        "cpu_s": round(cpu, 3) if cpu is not None else None,
        # per million ticks published: a dropped tick is cheap and not a tick delivered
        "cpu_s_per_million": round(cpu / published * 1e6, 3) if cpu and published else None,
        "cpu_s_per_million_received": round(cpu / received * 1e6, 3) if cpu and received else None,
        "ticks_per_s": round(received / span) if span else None,
        "peak_rss_mib": round(peak_rss / 1024, 1),
        "latency_us": {k: round(lat[k] / 1000, 1) for k in ("p50", "p99", "p99_9", "max") if k in lat},
        "cpu_s_by_thread": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
    }


def parse_config(text):
    name, _, rest = text.partition(":")
    env = {}
    for kv in filter(None, rest.split(",")):
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"--config {text!r}: {kv!r} is not KEY=VALUE")
        env[k] = v
    return name, env


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", "target") + "/release/panda-feed")
    ap.add_argument("--corpus", action="append", required=True, metavar="NAME=FILE")
    ap.add_argument("--config", action="append", default=[], metavar="NAME[:K=V,...]")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--replay-rate", type=int, default=0, help="messages/s (0: as fast as read)")
    ap.add_argument("--ticks", type=int, default=0,
                    help="replay only the first messages holding this many ticks (0: all)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--poll-s", type=float, default=0.05)
    ap.add_argument("--stall-s", type=float, default=5.0)
    ap.add_argument("--max-s", type=float, default=600.0, help="run --duration, a safety net")
    ap.add_argument("--out", help="write the JSON report here")
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        raise SystemExit(f"{a.bin} not found: cargo build --release, or pass --bin")
    configs = [parse_config(c) for c in (a.config or ["defaults"])]
    corpora = []
    for c in a.corpus:
        name, sep, path = c.partition("=")
        if not sep or not os.path.exists(path) or not os.path.exists(path + ".csv"):
            raise SystemExit(f"--corpus {c!r}: want NAME=FILE with FILE and FILE.csv (perf/corpus.py)")
        corpora.append((name, path, corpus_ticks(path)))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="panda-cost-") as wd:
        if a.ticks:
            corpora = [(n, *truncate(p, a.ticks, wd)) for n, p, _ in corpora]
        for r in range(a.runs):
            for cname, cpath, ticks in corpora:
                for name, env in configs:
                    row = run_once(a, cpath, ticks, env, wd)
                    rows.setdefault((cname, name), []).append(row)
                    print(f"round {r + 1} {cname:<6} {name:<14} cpu/M {row['cpu_s_per_million']} s  "
                          f"{row['ticks_per_s']} ticks/s  lost {row['lost']}  "
                          f"p50 {row['latency_us'].get('p50')} µs  rss {row['peak_rss_mib']} MiB",
                          flush=True)
    report = {
        "harness": "perf/cost.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().release}; load average at end "
                   f"{os.getloadavg()[0]:.2f} (shared VM)",
        "replay_rate_msgs_per_s": a.replay_rate or "as fast as read",
        "results": [],
    }
    print("\ncorpus  config          cpu s/M ticks  ticks/s      lost   p50 µs  p99 µs")
    for (cname, name), rs in rows.items():
        med = {
            "cpu_s_per_million": median([x["cpu_s_per_million"] for x in rs]),
            "ticks_per_s": median([x["ticks_per_s"] for x in rs]),
            "lost": median([x["lost"] for x in rs]),
            "p50_us": median([x["latency_us"].get("p50") for x in rs]),
            "p99_us": median([x["latency_us"].get("p99") for x in rs]),
            "peak_rss_mib": median([x["peak_rss_mib"] for x in rs]),
        }
        threads_med = {}
        for k in {k for x in rs for k in x["cpu_s_by_thread"]}:
            threads_med[k] = median([x["cpu_s_by_thread"].get(k, 0.0) / x["published"] * 1e6
                                     for x in rs if x["published"]])
        med["cpu_s_per_million_by_thread"] = dict(sorted(threads_med.items(), key=lambda kv: -kv[1]))
        print(f"{cname:<7} {name:<15} {med['cpu_s_per_million']!s:>13}  {med['ticks_per_s']!s:>9} "
              f"{med['lost']!s:>9} {med['p50_us']!s:>8} {med['p99_us']!s:>7}")
        print("        by thread (s/M): " + ", ".join(f"{k} {v}" for k, v in med["cpu_s_per_million_by_thread"].items()))
        report["results"].append({"corpus": cname, "config": name, "env": dict(configs)[name],
                                  "median": med, "runs": rs})
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(report, fh, indent=1)
            fh.write("\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
