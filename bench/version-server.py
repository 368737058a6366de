#!/usr/bin/env python3
"""A stand-in kube-apiserver for `kubectl get --raw /version`: the HTTPS endpoint bench/run.sh
points kubectl at to measure what an exec credential plugin adds to a kubectl command.

    version-server.py CERT KEY PORT_FILE

Serves HTTPS on 127.0.0.1 (a free port, written to PORT_FILE once listening) with the given
certificate. GET /version with an `Authorization: Bearer <something>` header answers a version
document like a real apiserver's; without the header 401 (so a benchmark that lost its
credential fails instead of measuring nothing); anything else 404. The token is never looked at
beyond its presence, never logged. Python 3 standard library only.
"""

import http.server
import json
import os
import socket
import ssl
import sys

VERSION = json.dumps({
    "major": "1", "minor": "36", "gitVersion": "v1.36.3", "gitTreeState": "clean",
    "goVersion": "go1.26", "compiler": "gc", "platform": "linux/amd64",
}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status, body):
        # One write: headers and body in separate small writes would make the body wait for
        # kubectl's delayed ACK (Nagle), up to 40 ms per request.
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.wfile.write(head.encode() + body)

    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if self.path.split("?")[0] != "/version":
            self._send(404, b'{"kind":"Status","code":404}')
        elif not token:
            self._send(401, b'{"kind":"Status","code":401}')
        else:
            self._send(200, VERSION)


def main():
    if len(sys.argv) != 4:
        print("usage: version-server.py CERT KEY PORT_FILE", file=sys.stderr)
        return 2
    cert, key, port_file = sys.argv[1:]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
