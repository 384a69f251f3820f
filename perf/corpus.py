#!/usr/bin/env python3
"""Framed Kite corpora for the cost harness (perf/cost.py), standard library only.

Writes a framed file (records of u32 big-endian length + one binary Kite
message, what `panda-feed mock-exchange --replay` and `decode --framed` read)
and the instruments CSV that `panda-feed run` subscribes to for it.

Two corpora, as issue 15 defines them:
  full   messages of 50 full packets (184 bytes) over 250 NSE instruments
  mixed  10-90 packets per message: ~31 % ltp, 31 % quote, 21 % full, 16 %
         index (32-byte index packets), over 500 instruments (NSE, NFO, BSE,
         a few CDS) and 20 indices

Values are realistic, not random bits: each instrument's price is a random
walk around its own level (in paise, or 1e-7 rupee for CDS), volumes grow,
five-level depth straddles the price, timestamps are the current time.

    perf/corpus.py full  --ticks 1000000 --out /tmp/full.framed
    perf/corpus.py mixed --ticks 1000000 --out /tmp/mixed.framed
"""
import argparse
import random
import struct
import time

KINDS = {"ltp": 8, "quote": 44, "full": 184, "index": 32}
MIX = (("ltp", 31), ("quote", 31), ("full", 21), ("index", 16))


class Instrument:
    def __init__(self, r, token, exchange):
        self.token = token
        self.exchange = exchange
        seg = token & 0xFF
        if seg == 3:  # CDS: 1e-7 rupee, e.g. USDINR around 83.25
            self.tick = 25_000
            self.price = r.randrange(500_000_000, 1_000_000_000)
        else:  # paise, 5 paise steps
            self.tick = 5
            self.price = r.randrange(5_000, 500_000)
        self.close = self.price
        self.volume = r.randrange(1_000, 1_000_000)
        self.oi = r.randrange(0, 5_000_000) if seg in (2, 3) else 0

    def step(self, r):
        self.price = max(self.tick, self.price + r.randrange(-4, 5) * self.tick)
        qty = r.randrange(1, 500)
        self.volume += qty
        return qty


def ltp(i, r):
    i.step(r)
    return struct.pack(">2I", i.token, i.price)


def quote_words(i, r, now):
    qty = i.step(r)
    p = i.price
    return [i.token, p, qty, p - i.tick, i.volume, r.randrange(10_000, 900_000),
            r.randrange(10_000, 900_000), i.close, p + 40 * i.tick, p - 40 * i.tick, i.close]


def quote(i, r, now):
    return struct.pack(">11I", *quote_words(i, r, now))


def full(i, r, now):
    w = quote_words(i, r, now)
    w += [now - r.randrange(0, 3), i.oi, i.oi + 1000, max(0, i.oi - 1000), now]
    depth = b""
    for side in (-1, 1):  # five bids below, five offers above
        for level in range(5):
            price = max(i.tick, i.price + side * (level + 1) * i.tick)
            depth += struct.pack(">2IH2x", r.randrange(1, 5_000), price, r.randrange(1, 40))
    return struct.pack(">16I", *w) + depth


def index(i, r, now):
    i.step(r)
    p = i.price
    # high, low, open, close, then the signed absolute change (KITE_PROTOCOL 4.7)
    return struct.pack(">6IiI", i.token, p, p + 40 * i.tick, p - 40 * i.tick, i.close,
                       i.close, p - i.close, now)


def message(packets):
    out = [struct.pack(">H", len(packets))]
    for p in packets:
        out.append(struct.pack(">H", len(p)))
        out.append(p)
    return b"".join(out)


def build(kind, ticks, seed):
    r = random.Random(seed)
    if kind == "full":
        insts = [Instrument(r, (100_000 + n) << 8 | 1, "NSE") for n in range(250)]
        indices = []
    else:
        segs = (1, 1, 1, 1, 2, 2, 2, 4, 4, 3)
        names = {1: "NSE", 2: "NFO", 3: "CDS", 4: "BSE"}
        insts = []
        for n in range(500):
            seg = segs[n % len(segs)]
            insts.append(Instrument(r, (100_000 + n) << 8 | seg, names[seg]))
        indices = [Instrument(r, (1_000 + n) << 8 | 9, "INDICES") for n in range(20)]
    now = int(time.time())
    msgs = []
    left = ticks
    while left > 0:
        n = 50 if kind == "full" else r.randrange(10, 91)
        n = min(n, left)
        packets = []
        for _ in range(n):
            if kind == "full":
                packets.append(full(r.choice(insts), r, now))
                continue
            k = r.choices([m for m, _ in MIX], weights=[w for _, w in MIX])[0]
            if k == "index":
                packets.append(index(r.choice(indices), r, now))
            elif k == "ltp":
                packets.append(ltp(r.choice(insts), r))
            elif k == "quote":
                packets.append(quote(r.choice(insts), r, now))
            else:
                packets.append(full(r.choice(insts), r, now))
        msgs.append(message(packets))
        left -= n
    return msgs, insts + indices


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=("full", "mixed"))
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--out", required=True, help="framed corpus; the CSV is OUT.csv")
    a = ap.parse_args()
    if a.ticks < 1:
        ap.error(f"--ticks {a.ticks}: must be at least 1")
    msgs, insts = build(a.kind, a.ticks, a.seed)
    with open(a.out, "wb") as fh:
        for m in msgs:
            fh.write(struct.pack(">I", len(m)))
            fh.write(m)
    with open(a.out + ".csv", "w") as fh:
        fh.write("instrument_token,tradingsymbol,name,exchange,mode\n")
        for i in insts:
            fh.write(f"{i.token},SYM{i.token},SYM{i.token},{i.exchange},full\n")
    print(f"{a.out}: {len(msgs)} messages, {a.ticks} ticks, {len(insts)} instruments")


if __name__ == "__main__":
    main()
