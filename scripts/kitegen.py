"""Kite binary messages for panda-feed's tests: builders, a seeded random
corpus generator, and the rules for comparing our decoder with the official one.

Used by scripts/make_vectors.py (fixed reference vectors) and
scripts/difftest.py (randomized differential test). Standard library only.
"""
import random
import struct

U32_MAX = 0xFFFFFFFF
KNOWN_LENS = (8, 28, 32, 44, 184)


def be32(*words):
    return struct.pack(">%dI" % len(words), *(w & U32_MAX for w in words))


def message(*packets, count=None, trailing=b""):
    """u16 packet count, then u16-length-prefixed packets, then `trailing`."""
    out = struct.pack(">H", len(packets) if count is None else count)
    for p in packets:
        out += struct.pack(">H", len(p)) + p
    return out + trailing


def framed(messages):
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def depth_entry(quantity, price, orders, pad=b"\0\0"):
    return be32(quantity, price) + struct.pack(">H", orders) + pad


# ---------------------------------------------------------------- random corpus

CLASSES = (
    "valid", "heartbeat", "zero_packets", "empty", "truncated_header",
    "short_packet", "overrun_last", "overrun_middle", "tiny",
)
WEIGHTS = (70, 4, 3, 2, 5, 5, 5, 4, 2)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def u32(self):
        r = self.r.random()
        if r < 0.10:
            return self.r.choice((0, 1, U32_MAX, 0x80000000, 0x7FFFFFFF, U32_MAX - 1))
        if r < 0.55:
            return self.r.randrange(0, 10_000_000)
        return self.r.getrandbits(32)

    def u16(self):
        return self.r.choice((0, 1, 0xFFFF, 0x8000, self.r.getrandbits(16)))

    def token(self):
        seg = self.r.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 13, 255, self.r.randrange(256)))
        hi = self.r.choice((0, 1, 0xFFFFFF, self.r.getrandbits(24), self.r.randrange(1, 200_000)))
        return (hi << 8) | seg

    def ts(self):
        return self.r.choice((0, 1, U32_MAX, 0x7FFFFFFF, self.r.randrange(1_500_000_000, 1_900_000_000),
                              self.r.getrandbits(32)))

    def packet(self, length=None):
        if length is None:
            length = self.r.choice(KNOWN_LENS * 4 + (4, 5, 7, 9, 12, 27, 29, 31, 33, 43, 45, 100, 183, 185, 300))
        tok = self.token()
        if length in (8, 28, 32, 44, 184):
            words = [tok] + [self.u32() for _ in range(min(length, 64) // 4 - 1)]
            if length in (28, 32, 44, 184) and self.r.random() < 0.15:
                words[{28: 5, 32: 5, 44: 10, 184: 10}[length]] = 0  # close = 0
            if length == 32:
                words[7] = self.ts()
            if length == 184:
                words[11] = self.ts()
                words[15] = self.ts()
            body = be32(*words)
            if length == 184:
                for _ in range(10):
                    pad = bytes(self.r.getrandbits(8) for _ in range(2)) if self.r.random() < 0.3 else b"\0\0"
                    body += depth_entry(self.u32(), self.u32(), self.u16(), pad)
            return body
        return be32(tok) + bytes(self.r.getrandbits(8) for _ in range(length - 4))

    def packets(self):
        n = self.r.choice((1, 1, 2, 3, 5, 8, 13, self.r.randrange(1, 40)))
        if self.r.random() < 0.01:
            n = self.r.randrange(100, 400)
        return [self.packet() for _ in range(n)]

    def trailing(self):
        return bytes(self.r.getrandbits(8) for _ in range(self.r.randrange(1, 9))) if self.r.random() < 0.1 else b""

    def one(self):
        cls = self.r.choices(CLASSES, WEIGHTS)[0]
        if cls == "valid":
            return cls, message(*self.packets(), trailing=self.trailing())
        if cls == "heartbeat":
            return cls, bytes([self.r.getrandbits(8)])
        if cls == "zero_packets":
            return cls, message(trailing=self.trailing())
        if cls == "empty":
            return cls, b""
        if cls == "truncated_header":
            ps = self.packets()
            extra = self.r.randrange(1, 5)
            m = message(*ps, count=len(ps) + extra)
            if self.r.random() < 0.3:
                m += b"\x00"  # half a length prefix
            return cls, m
        if cls == "short_packet":
            ps = self.packets()
            ps.insert(self.r.randrange(len(ps) + 1), bytes(self.r.randrange(4)))
            return cls, message(*ps)
        if cls == "tiny":  # 2-4 byte messages
            return cls, bytes(self.r.getrandbits(8) for _ in range(self.r.randrange(2, 5)))
        # overrun: one packet's declared length runs past the end of the message
        ps = self.packets()
        at = len(ps) - 1 if cls == "overrun_last" else self.r.randrange(len(ps))
        if cls == "overrun_middle" and len(ps) == 1:
            ps.append(self.packet())
        m = message(*ps)
        off = 2
        for p in ps[:at]:
            off += 2 + len(p)
        available = len(m) - off - 2
        declared = self.r.randrange(available + 1, min(available + 300, 0xFFFF) + 1)
        m = m[:off] + struct.pack(">H", declared) + m[off + 2:]
        return cls, m


def corpus(seed, n):
    g = Gen(seed)
    return [g.one() for _ in range(n)]


# ---------------------------------------------------------------- comparison

# Classes where panda-feed is deliberately stricter than the official parser
# (`docs/ARCHITECTURE.md`, "The data contract"): an overrunning packet is an error, not a silently clamped
# packet; a zero-length message is an error, not "no ticks".
STRICTER = {"overrun": ("overrun_last", "overrun_middle"), "empty": ("empty",)}


def _same(ours, oracle, path):
    if isinstance(oracle, dict):
        if not isinstance(ours, dict) or set(ours) != set(oracle):
            return "%s: keys %s != oracle %s" % (path, sorted(ours) if isinstance(ours, dict) else ours,
                                                 sorted(oracle))
        for k in oracle:
            bad = _same(ours[k], oracle[k], path + "." + k)
            if bad:
                return bad
        return None
    if isinstance(oracle, list):
        if not isinstance(ours, list) or len(ours) != len(oracle):
            return "%s: list differs" % path
        for i, (a, b) in enumerate(zip(ours, oracle)):
            bad = _same(a, b, "%s[%d]" % (path, i))
            if bad:
                return bad
        return None
    if isinstance(oracle, bool) or oracle is None:
        return None if ours is oracle else "%s: %r != oracle %r" % (path, ours, oracle)
    if isinstance(oracle, (int, float)):
        # equal as f64, and the same kind (int vs float: `change` is int 0 iff close == 0)
        if isinstance(ours, bool) or type(ours) is not type(oracle) or float(ours) != float(oracle):
            return "%s: %r != oracle %r" % (path, ours, oracle)
        return None
    if isinstance(oracle, str) and path.endswith(("last_trade_time", "exchange_timestamp")):
        # oracle: naive UTC ISO text (driver pins TZ=UTC); ours: RFC 3339 with Z, null for raw 0
        want = None if oracle == "1970-01-01T00:00:00" else oracle + "Z"
        return None if ours == want else "%s: %r != oracle %r (as %r)" % (path, ours, oracle, want)
    return None if ours == oracle else "%s: %r != oracle %r" % (path, ours, oracle)


def compare(ours, oracle, cls=None):
    """None when our per-frame line agrees with the oracle's, else a description."""
    if "error" in oracle:
        return None if "error" in ours else "oracle rejected (%s) but we did not" % oracle["error"]
    if "error" in ours:
        reason = ours["error"].split(":", 1)[0]
        if reason in STRICTER and (cls is None or cls in STRICTER[reason]):
            return None
        return "we rejected (%s) but the oracle did not" % ours["error"]
    if cls in STRICTER["overrun"]:
        return "an overrunning packet was not rejected"
    return _same(ours["ticks"], oracle["ticks"], "ticks")


def realistic_corpus(seed, messages, packets_per_message):
    """Valid messages only, the mix a feed host sees: mostly full and quote
    packets of equities and derivatives, some LTP, a few index packets."""
    g = Gen(seed)
    kinds = (184,) * 5 + (44,) * 3 + (8,) + (32,)
    out = []
    for _ in range(messages):
        ps = []
        for _ in range(packets_per_message):
            length = g.r.choice(kinds)
            body = bytearray(g.packet(length))
            seg = 9 if length == 32 else g.r.choice((1, 1, 1, 2, 2, 3, 7, 12))
            body[3] = seg
            ps.append(bytes(body))
        out.append(message(*ps))
    return out
