#!/usr/bin/env python3
"""panda-feed's driver around the official parser, KiteTicker._parse_binary.

Runs with the interpreter of the venv made by scripts/oracle-venv:

    $(scripts/oracle-venv) scripts/kite_oracle.py --framed CORPUS.framed
    $(scripts/oracle-venv) scripts/kite_oracle.py MSG.bin [MSG.bin ...]

Output: one JSON line per message, in input order,
    {"frame": i, "ticks": [...]}  or  {"frame": i, "error": "<exception>"}
with sorted keys. The parser builds naive local datetimes; this driver pins
TZ=UTC first, so every datetime is naive UTC, printed as ISO text without a
zone ("2021-07-05T05:11:27"). Exit status 2 when the parser raised on any message.
"""
import json
import os
import struct
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()

from kiteconnect import KiteTicker  # noqa: E402  (after TZ is pinned)


def messages_from(paths, framed):
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        if not framed:
            yield data
            continue
        at = 0
        while at < len(data):
            if at + 4 > len(data):
                sys.exit("kite_oracle: %s: truncated record length at byte %d" % (path, at))
            (n,) = struct.unpack_from(">I", data, at)
            body = data[at + 4:at + 4 + n]
            if len(body) != n:
                sys.exit("kite_oracle: %s: record at byte %d overruns the file" % (path, at))
            yield body
            at += 4 + n


def main(argv):
    framed = "--framed" in argv
    paths = [a for a in argv if a != "--framed"]
    if not paths:
        sys.exit(__doc__)
    parse = KiteTicker("oracle", "oracle")._parse_binary  # no network I/O
    iso = lambda o: o.isoformat()  # noqa: E731  datetimes only
    status = 0
    out = sys.stdout
    for i, msg in enumerate(messages_from(paths, framed)):
        try:
            line = {"frame": i, "ticks": parse(msg)}
        except Exception as exc:  # the official parser raises on malformed input
            status = 2
            line = {"frame": i, "error": "%s: %s" % (type(exc).__name__, exc)}
        out.write(json.dumps(line, sort_keys=True, default=iso) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
