#!/usr/bin/env python3
"""A stand-in for an OpenAI-compatible VLM endpoint, for scripts/bench-annotator.sh.

Usage: standin_vlm.py PORT DELAY_S SLOTS

Answers POST /v1/chat/completions after DELAY_S seconds with a fixed instruction, serving at
most SLOTS requests at once (the others wait), like a GPU server with a fixed batch capacity.
GET /stats returns {"requests": N, "most_in_flight": M} since the last GET /stats, as JSON.
Standard library only.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DELAY, SLOTS = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
slots = threading.Semaphore(SLOTS)
lock = threading.Lock()
stats = {"requests": 0, "most_in_flight": 0}
in_flight = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            now = dict(stats)
            stats.update(requests=0, most_in_flight=0)
        self.reply(now)

    def do_POST(self):
        global in_flight
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with slots:
            with lock:
                in_flight += 1
                stats["requests"] += 1
                stats["most_in_flight"] = max(stats["most_in_flight"], in_flight)
            time.sleep(DELAY)
            with lock:
                in_flight -= 1
        self.reply({"choices": [{"message": {"role": "assistant", "content": "Move the camera a little to the left."}}]})


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
