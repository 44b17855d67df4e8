"""Small UDP and TCP probes for the lab's NAT and router checks (docs/lab.md).

    python3 udpprobe.py echo ADDR PORT
        UDP echo: answers every datagram with {"seen": "IP:PORT"} (where it
        came from); a datagram {"again_after": S} is answered a second time S
        seconds later, from the same socket. Prints "ready" once bound.
    python3 udpprobe.py probe [--port P] [--listen S] [--again-after A] TARGET...
        From one socket (port P, default any), sends {"again_after": A} to
        each TARGET (IP:PORT) and prints one JSON line {"local": PORT,
        "seen": {TARGET: "IP:PORT" or null}} once every target answered (or
        after 2 s); then prints {"from": "IP:PORT", "data": ...} for every
        other datagram that arrives until S seconds from the start. Exit 1
        when a target did not answer.
    python3 udpprobe.py send TARGET [--port P] [--count N]
        Sends N datagrams (default 3) to TARGET from port P (default any).
    python3 udpprobe.py stun ADDR PORT
        A STUN binding request (RFC 5389); prints the mapped address, exit 1
        when no answer comes in 3 s.
    python3 udpprobe.py tcp-serve ADDR PORT
        Accepts TCP connections until killed, answering each with
        {"seen": "IP:PORT"}; prints "ready" once listening.
    python3 udpprobe.py tcp-call ADDR PORT
        Connects (2 s time-out), prints the answer; exit 1 with the reason
        when the connection fails.

An IPv6 TARGET is written [IP]:PORT; `probe --family 6` and `send
--family 6` use an IPv6 socket (the default is IPv4).

Every address is one the lab made in its namespaces.
"""

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time


def split(target):
    host, port = target.rsplit(":", 1)
    return host.strip("[]"), int(port)


def text(addr):
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def echo(addr, port):
    sock = socket.socket(family_of(addr), socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, source = sock.recvfrom(2048)
        answer = json.dumps({"seen": text(source[:2])}).encode()
        sock.sendto(answer, source)
        try:
            again = float(json.loads(data).get("again_after", 0))
        except (ValueError, AttributeError):
            again = 0
        if 0 < again < 60:
            threading.Timer(again, sock.sendto, (answer, source)).start()


def probe(targets, port, listen, again_after, family=4):
    started = time.monotonic()
    six = family == 6
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("::" if six else "0.0.0.0", port))
    wanted = {split(t): t for t in targets}
    seen = {t: None for t in targets}
    for target in wanted:
        sock.sendto(json.dumps({"again_after": again_after}).encode(), target)
    others = []
    deadline = started + 2
    while any(v is None for v in seen.values()) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, source = sock.recvfrom(2048)
        except socket.timeout:
            break
        name = wanted.get(source[:2])
        if name is not None and seen[name] is None:
            seen[name] = json.loads(data).get("seen")
        else:
            others.append((data, source))
    print(json.dumps({"local": sock.getsockname()[1], "seen": seen}), flush=True)
    for data, source in others:
        print(json.dumps({"from": text(source[:2]), "data": data.decode(errors="replace")}),
              flush=True)
    end = started + listen
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data, source = sock.recvfrom(2048)
        except socket.timeout:
            break
        print(json.dumps({"from": text(source[:2]), "data": data.decode(errors="replace")}),
              flush=True)
    return 0 if all(seen.values()) else 1


def send(target, port, count, family=4):
    six = family == 6
    sock = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("::" if six else "0.0.0.0", port))
    for i in range(count):
        sock.sendto(json.dumps({"unsolicited": i}).encode(), split(target))
        time.sleep(0.05)
    print(json.dumps({"sent": count, "from_port": sock.getsockname()[1]}), flush=True)
    return 0


STUN_MAGIC = 0x2112A442


def stun(addr, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + transaction
    for _ in range(3):
        sock.sendto(request, (addr, port))
        sock.settimeout(1)
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) < 20 or data[8:20] != transaction:
            continue
        mapped = parse_mapped(data[20:])
        print(json.dumps({"server": f"{addr}:{port}", "mapped": mapped}), flush=True)
        return 0
    print(f"no STUN answer from {addr}:{port} in 3 s", file=sys.stderr)
    return 1


def parse_mapped(attrs):
    """The (XOR-)MAPPED-ADDRESS of a binding response, as IP:PORT."""
    found = None
    while len(attrs) >= 4:
        kind, length = struct.unpack("!HH", attrs[:4])
        value = attrs[4:4 + length]
        attrs = attrs[4 + (length + 3) // 4 * 4:]
        if kind in (0x0020, 0x0001) and len(value) >= 8 and value[1] == 1:
            port = struct.unpack("!H", value[2:4])[0]
            ip = struct.unpack("!I", value[4:8])[0]
            if kind == 0x0020:
                port ^= STUN_MAGIC >> 16
                ip ^= STUN_MAGIC
            found = f"{socket.inet_ntoa(struct.pack('!I', ip))}:{port}"
            if kind == 0x0020:
                break
    return found


def tcp_serve(addr, port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((addr, port))
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, source = server.accept()
        with conn:
            conn.sendall(json.dumps({"seen": text(source)}).encode())


def tcp_call(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=2) as conn:
            conn.settimeout(2)
            answer = conn.recv(2048)
    except OSError as error:
        print(f"cannot reach {addr}:{port} over TCP: {error}", flush=True)
        return 1
    print(answer.decode(errors="replace"), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("echo")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p = sub.add_parser("probe")
    p.add_argument("targets", nargs="+")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--listen", type=float, default=3.0)
    p.add_argument("--again-after", type=float, default=0.0)
    p.add_argument("--family", type=int, choices=(4, 6), default=4)
    p = sub.add_parser("send")
    p.add_argument("target")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--family", type=int, choices=(4, 6), default=4)
    p = sub.add_parser("stun")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p = sub.add_parser("tcp-serve")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p = sub.add_parser("tcp-call")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    args = parser.parse_args()
    if args.mode == "echo":
        return echo(args.addr, args.port)
    if args.mode == "probe":
        return probe(args.targets, args.port, args.listen, args.again_after, args.family)
    if args.mode == "send":
        return send(args.target, args.port, args.count, args.family)
    if args.mode == "stun":
        return stun(args.addr, args.port)
    if args.mode == "tcp-serve":
        return tcp_serve(args.addr, args.port)
    return tcp_call(args.addr, args.port)


if __name__ == "__main__":
    sys.exit(main())
