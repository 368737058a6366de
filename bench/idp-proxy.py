#!/usr/bin/env python3
"""Timing and counting reverse proxy between the benchmarked plugins and Dex.

Dex does not log HTTP requests, so bench/run.sh puts this proxy at the issuer's address (Dex's
`issuer` names the proxy's port, Dex itself listens on another loopback port) and learns from it
which requests an IdP client made and how long each one kept the client waiting.

    idp-proxy.py LISTEN_PORT UPSTREAM_PORT LOG_FILE

For every request it appends one JSON line to LOG_FILE:

    {"start": T0, "end": T1, "method": "POST", "path": "/dex/token", "status": 200,
     "grant": "refresh_token"}

T0 is when the request line had arrived, T1 when the last byte of the answer was written back,
both CLOCK_MONOTONIC seconds (`time.monotonic()`, the same clock in every process of the
machine), so T1 - T0 is the time the client waited for Dex, this proxy's own overhead included.
`grant` is the `grant_type` of token requests and nothing else of the body: no path query, no
header, no body byte that could hold a code, a token or a verifier is ever written. Python 3
standard library only; serves loopback only.
"""

import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

# Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded.
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
       "upgrade"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0
    log_lock = threading.Lock()
    log_fd = -1

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self):
        # Called once the request line is in: the client is waiting from here on.
        self._start = time.monotonic()
        return super().parse_request()

    def log_message(self, format, *args):  # noqa: A002 - quiet; the JSON log is the record
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        grant = None
        if body and self.command == "POST":
            form = urllib.parse.parse_qs(body.decode("ascii", "replace"))
            grant = (form.get("grant_type") or [None])[0]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            status, reason = reply.status, reply.reason
            fields = [(k, v) for k, v in reply.getheaders()
                      if k.lower() not in HOP and k.lower() != "content-length"]
        except OSError:
            status, reason, data, fields = 502, "Bad Gateway", b"upstream failed\n", []
        finally:
            conn.close()
        # The whole answer in one write on a TCP_NODELAY socket: a second small write would wait
        # for the client's delayed ACK (Nagle), adding up to 40 ms the log would not show.
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
        head += f"Content-Length: {len(data)}\r\n\r\n"
        self.wfile.write(head.encode("latin-1") + (data if self.command != "HEAD" else b""))
        record = {
            "start": self._start,
            "end": time.monotonic(),
            "method": self.command,
            "path": urllib.parse.urlsplit(self.path).path,
            "status": status,
        }
        if grant is not None:
            record["grant"] = grant
        line = (json.dumps(record) + "\n").encode()
        with self.log_lock:
            os.write(self.log_fd, line)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _forward


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64 plugins connecting at once


def main():
    if len(sys.argv) != 4:
        print("usage: idp-proxy.py LISTEN_PORT UPSTREAM_PORT LOG_FILE", file=sys.stderr)
        return 2
    listen, upstream, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    Handler.upstream_port = upstream
    Handler.log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    server = Server(("127.0.0.1", listen), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
