#!/usr/bin/env python3
"""A callback receiver for trying async functions: prints every POST it gets.

    python3 examples/async/receiver.py 8000

Functions reach it as http://host.docker.internal:8000/… (it listens on all addresses).
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(f"--- callback {self.path}")
        for name in ("X-Call-Id", "X-Function-Name", "X-Function-Status", "X-Duration-Seconds"):
            print(f"{name}: {self.headers.get(name)}")
        print(body.decode(errors="replace"), flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()
