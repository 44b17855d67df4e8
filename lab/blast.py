"""A plain TCP transfer, to measure a lab host's uplink through its cap.

    python3 blast.py recv ADDR PORT [SKIP_BYTES]   prints "ready", then one JSON line
    python3 blast.py send ADDR PORT BYTES

The receiver reads one connection to its end and reports the rate over the
bytes after the first SKIP_BYTES (default 1 MiB), which leaves out slow
start and the shaper's initial burst.
"""

import json
import socket
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def receive(addr, port, skip):
    server = socket.socket(family(addr), socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((addr, port))
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    total = 0
    mark = None
    buf = bytearray(1 << 20)
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        total += n
        if mark is None and total >= skip:
            mark = (time.monotonic(), total)
    end = time.monotonic()
    if mark is None or end <= mark[0]:
        print(json.dumps({"bytes": total, "error": "too short to measure"}), flush=True)
        sys.exit(1)
    rate = (total - mark[1]) / (end - mark[0])
    print(json.dumps({"bytes": total, "seconds": end - mark[0], "rate": rate}), flush=True)


def send(addr, port, count):
    conn = socket.create_connection((addr, port), timeout=30)
    block = b"\x5a" * (1 << 20)
    left = count
    while left > 0:
        left -= conn.send(block[: min(left, len(block))])
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
    conn.close()


def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "recv":
        receive(addr, port, int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20)
    elif mode == "send":
        send(addr, port, int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
