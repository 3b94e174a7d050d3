# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
"""A small JSON service: GET /healthz and GET /greet?name=…

Run by `uv run` from a ConfigMap; add dependencies to the header above and uv installs
them when the pod starts.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

GREETING = os.environ.get("GREETING", "Hello")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"ok": True})
        if url.path == "/greet":
            name = parse_qs(url.query).get("name", ["world"])[0]
            return self.reply(200, {"greeting": f"{GREETING}, {name}!"})
        return self.reply(404, {"error": f"no route {url.path}"})

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":
    address = (os.environ.get("BIND_ADDRESS", "0.0.0.0"), int(os.environ.get("PORT", "8080")))
    print(f"serving on {address[0]}:{address[1]}", flush=True)
    ThreadingHTTPServer(address, Handler).serve_forever()
