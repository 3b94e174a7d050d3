"""A tiny web API the demo builder works on."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the lab\n")


if __name__ == "__main__":
    HTTPServer((os.environ.get("BIND_ADDRESS", ""), 8080), Handler).serve_forever()
