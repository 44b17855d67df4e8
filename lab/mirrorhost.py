"""An HTTPS mirror host for the lab (docs/lab.md, "An HTTPS mirror"): serves
one artifact file, and its chunk list beside it, over HTTP/1.1 and TLS, as
a publisher's web server or an object store would.

    python3 mirrorhost.py --listen IP --port N --cert host.pem --key host.key \
        --file PATH [--chunk-list PATH] [--name NAME]

`GET /NAME` (and `HEAD`) serves the file, `GET /NAME.chunk-list` the chunk
list (NAME defaults to the file's name); anything else is 404. Byte ranges
as RFC 9110 says: one range `bytes=A-B`, `bytes=A-` or `bytes=-N` is
answered `206` with `Content-Range`; a range that starts past the end is
`416` with `Content-Range: bytes */LENGTH`; a header that is not one
well-formed byte range is ignored (a `200` with the whole file), as is a
range under an `If-Range` that does not match. Every answer carries a
strong `ETag` and `Last-Modified` and a `Content-Length`, so connections
are kept alive (HTTP/1.1) until the client closes them or stays silent for
60 s. Each connection runs in a thread of its own, its TLS handshake too.

Prints one JSON line `{"event": "ready", ...}` once it listens, and on
SIGTERM or SIGINT one `{"event": "stopped", ...}` with the requests
answered and the body bytes sent, by status.
Standard library only.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import re
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
PIECE = 256 * 1024


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.body_bytes = {}

    def add(self, status, sent):
        with self.lock:
            key = str(status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.body_bytes[key] = self.body_bytes.get(key, 0) + sent


class Served:
    """One file served at one path, with its validators."""

    def __init__(self, path):
        self.path = path
        st = os.stat(path)
        self.length = st.st_size
        self.etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        self.last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)


def parse_range(header, length):
    """(start, end inclusive), "unsatisfiable", or None (ignore the header)."""
    match = RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return (max(0, length - suffix), length - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= length:
        return "unsatisfiable"
    end = int(last) if last else length - 1
    return (start, min(end, length - 1))


def make_handler(files, stats):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def version_string(self):
            return "mmlab-mirror"
        timeout = 60

        def setup(self):
            super().setup()
            # The handshake here, in this connection's thread, not in the
            # thread that accepts.
            self.request.settimeout(self.timeout)
            self.request.do_handshake()

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.answer(body=False)

        def do_GET(self):
            self.answer(body=True)

        def answer(self, body):
            served = files.get(self.path)
            if served is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                stats.add(404, 0)
                return
            start, end, status = 0, served.length - 1, 200
            header = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if header is not None and (if_range is None or if_range.strip() in
                                       (served.etag, served.last_modified)):
                wanted = parse_range(header, served.length)
                if wanted == "unsatisfiable":
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{served.length}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    stats.add(416, 0)
                    return
                if wanted is not None:
                    start, end = wanted
                    status = 206
            count = end - start + 1 if served.length else 0
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", served.etag)
            self.send_header("Last-Modified", served.last_modified)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{served.length}")
            self.send_header("Content-Length", str(count))
            self.end_headers()
            sent = 0
            if body and count:
                with open(served.path, "rb") as f:
                    f.seek(start)
                    while sent < count:
                        piece = f.read(min(PIECE, count - sent))
                        if not piece:
                            break
                        self.wfile.write(piece)
                        sent += len(piece)
            stats.add(status, sent)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # A client that closes mid-body or fails the handshake is routine.
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--chunk-list")
    parser.add_argument("--name")
    args = parser.parse_args()
    name = args.name or os.path.basename(args.file)
    files = {f"/{name}": Served(args.file)}
    if args.chunk_list:
        files[f"/{name}.chunk-list"] = Served(args.chunk_list)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    stats = Stats()
    server = Server((args.listen, args.port), make_handler(files, stats), context)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "ready", "listen": f"{args.listen}:{args.port}",
                      "paths": sorted(files)}), flush=True)
    server.serve_forever(poll_interval=0.2)
    with stats.lock:
        print(json.dumps({"event": "stopped", "requests": stats.requests,
                          "body_bytes": stats.body_bytes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
