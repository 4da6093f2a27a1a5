#!/usr/bin/env python3
"""A small test program for the external-segmenter protocol (docs/segmenters.md).

Usage: fake_segmenter.py MODE
  ok       answers every request: one object, "the test square", a centred square mask
           in frame 0 (PNG written to out_dir) and a box in the other frames; condition
           requests get a horizontal-gradient map
  crash    prints to stderr and exits 3 on the first request
  hang     never answers
  garbage  answers with a line that is not JSON
  wrong-id answers with another id
  error    answers {"id": …, "error": "model not loaded"}
  once     answers one request, then exits 0 (the client must start a new process)
  slow DIR [SECONDS]
           answers as ok, each segment request after SECONDS (0.3); while it waits, a file
           of its own in DIR marks it in flight, and it appends to DIR/in_flight how many
           were (its own included) when it began (scripts/bench-annotator.sh uses it too)
Standard library only.
"""
import json
import os
import struct
import sys
import time
import zlib


def write_gray_png(path, w, h, pixel):
    rows = b"".join(b"\x00" + bytes(pixel(x, y) for x in range(w)) for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def answer(req):
    if req["op"] == "segment":
        frames = req["frames"]
        f0 = frames[0]
        w, h = f0["width"], f0["height"]
        x0, y0, x1, y1 = w // 4, h // 4, w // 2, h // 2
        path = os.path.join(req["out_dir"], "obj0_f0.png")
        write_gray_png(path, w, h, lambda x, y: 255 if x0 <= x < x1 and y0 <= y < y1 else 0)
        masks = [path] + [None] * (len(frames) - 1)
        boxes = [None] + [[x0 + 2, y0, x1 + 2, y1] for _ in frames[1:]]
        return {"id": req["id"], "objects": [{"phrase": "the test square", "masks": masks, "boxes": boxes}]}
    if req["op"] == "condition":
        f = req["frame"]
        write_gray_png(req["out"], f["width"], f["height"], lambda x, y: x * 255 // max(1, f["width"] - 1))
        return {"id": req["id"], "map": req["out"]}
    return {"id": req["id"], "error": "unknown op " + req["op"]}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    for line in sys.stdin:
        req = json.loads(line)
        if mode == "crash":
            print("fake segmenter: boom", file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode == "garbage":
            print("this is not json", flush=True)
            continue
        if mode == "wrong-id":
            print(json.dumps({"id": req["id"] + 100, "objects": []}), flush=True)
            continue
        if mode == "error":
            print(json.dumps({"id": req["id"], "error": "model not loaded"}), flush=True)
            continue
        if mode == "slow" and req["op"] == "segment":
            log = sys.argv[2]
            mark = os.path.join(log, "req-%d-%d" % (os.getpid(), req["id"]))
            open(mark, "w").close()
            busy = sum(1 for n in os.listdir(log) if n.startswith("req-"))
            with open(os.path.join(log, "in_flight"), "a") as f:
                f.write("%d\n" % busy)
            time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0.3)
            os.remove(mark)
        print(json.dumps(answer(req)), flush=True)
        if mode == "once":
            return


if __name__ == "__main__":
    main()
