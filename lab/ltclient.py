"""A small libtorrent client, so the lab can put libtorrent's figures beside
minimodel's on the same hosts, caps, file and piece size (docs/lab.md).
Runs with Debian's python3-libtorrent (`/usr/bin/python3`).

    ltclient.py make FILE TORRENT [--piece-size BYTES] [--url-seed URL]...
        A v1 .torrent of FILE made with libtorrent's own create_torrent
        (default piece size 1 MiB; the lab passes the manifest's chunk size); prints its
        info-hash. Each URL is a web seed (BEP 19): an HTTP(S) server of the
        file, which every client that gets the torrent downloads from beside its
        peers (over HTTPS it trusts the authorities of SSL_CERT_FILE).
    ltclient.py seed TORRENT DIR --listen IP:PORT
        Checks DIR/<name> against the torrent, then seeds it until SIGTERM.
    ltclient.py get TORRENT DIR --listen IP:PORT [--peer IP:PORT]... [--go FILE]
        Waits until FILE exists (when given), connects to the peers, downloads
        into DIR, and seeds on until SIGTERM.

One session per process with DHT, local service discovery, UPnP and NAT-PMP
off, uTP and TCP on, and every IPv4 address in the global peer class (by
default libtorrent puts private ranges, the lab's addresses, in a local
class that ignores rate limits and unchoke slots). Everything else is
libtorrent's default: its choker, its piece picker, its peer exchange.

JSON lines on stdout: {"event": "listening"}; seed: {"event": "ready"} once
the file is checked; get: {"event": "progress", "bytes": N} about every
0.5 s and {"event": "finished", "elapsed_s": T} when every piece passed its
hash check (T from the go file); on SIGTERM {"event": "stopped",
"peers": {IP: {"down": BYTES, "up": BYTES}}, "hash_failures": N} (per remote address,
the payload bytes of the blocks it sent that arrived), then exit 0.
"""

import argparse
import json
import os
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError as error:  # the harness checks this before it starts a run
    sys.exit(f"python3-libtorrent is not installed for {sys.executable}: {error}")

STOP = False


def emit(**fields):
    print(json.dumps(fields), flush=True)


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def make(path, torrent, piece_size, url_seeds=()):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    creator = lt.create_torrent(fs, piece_size, flags=lt.create_torrent.v1_only)
    creator.set_creator("minimodel lab")
    for url in url_seeds:
        creator.add_url_seed(url)
    lt.set_piece_hashes(creator, os.path.dirname(os.path.abspath(path)))
    data = lt.bencode(creator.generate())
    with open(torrent, "wb") as out:
        out.write(data)
    info = lt.torrent_info(torrent)
    emit(event="torrent", info_hash=str(info.info_hash()), pieces=info.num_pieces(),
         piece_size=info.piece_length())


def session(listen):
    settings = {
        "listen_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": True,
        "enable_outgoing_utp": True,
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.block_progress_notification,
    }
    ses = lt.session(settings)
    classes = lt.ip_filter()
    classes.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(classes)
    return ses


class PeerBytes:
    """Payload bytes downloaded per remote IP, from every block that arrived
    (a `block_finished_alert` names the peer that sent it)."""

    def __init__(self, info):
        self.info = info
        self.down = {}

    def block(self, alert):
        ip = alert.endpoint[0]
        start = alert.block_index * BLOCK
        size = max(0, min(BLOCK, self.info.piece_size(alert.piece_index) - start))
        self.down[ip] = self.down.get(ip, 0) + size

    def totals(self):
        return {ip: {"down": down} for ip, down in sorted(self.down.items())}


BLOCK = 16 * 1024


def add(ses, torrent, directory):
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = directory
    return ses.add_torrent(params)


def serve(ses, handle, started=None):
    """Handles alerts until SIGTERM, every 50 ms; reports progress and the
    finish when `started` (a download). Not `wait_for_alert`: the alert it
    returns lives in a queue the session's thread goes on appending to, and
    converting it to Python crashed (SIGSEGV) under a flood of block
    alerts."""
    counts = PeerBytes(handle.torrent_file())
    failures = 0
    finished = started is None
    next_report = 0.0
    while not STOP:
        time.sleep(0.05)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.block_finished_alert):
                counts.block(alert)
            elif isinstance(alert, lt.hash_failed_alert):
                failures += 1
            elif isinstance(alert, lt.torrent_error_alert):
                emit(event="error", message=alert.message())
            elif isinstance(alert, lt.torrent_finished_alert) and not finished:
                finished = True
                emit(event="finished", elapsed_s=round(time.monotonic() - started, 3),
                     bytes=handle.status().total_wanted_done)
        now = time.monotonic()
        if not finished and now >= next_report:
            status = handle.status()
            emit(event="progress", bytes=status.total_wanted_done, peers=status.num_peers)
            next_report = now + 0.5
    emit(event="stopped", peers=counts.totals(), hash_failures=failures,
         uploaded=handle.status().all_time_upload)
    # Everything is reported: do not wait for the session's teardown, which
    # closes dozens of connections politely and took over 10 s with 35.
    sys.stdout.flush()
    os._exit(0)


def seed(torrent, directory, listen):
    ses = session(listen)
    emit(event="listening")
    handle = add(ses, torrent, directory)
    while not handle.status().is_seeding:
        if STOP:
            return 130
        status = handle.status()
        if status.errc.value():
            emit(event="error", message=status.errc.message())
            return 1
        if status.state == lt.torrent_status.downloading:
            emit(event="error", message=f"{directory} does not hold the torrent's file "
                 f"({status.total_wanted_done} of {status.total_wanted} bytes pass)")
            return 1
        time.sleep(0.05)
    emit(event="ready")
    serve(ses, handle)
    return 0


def get(torrent, directory, listen, peers, go):
    ses = session(listen)
    emit(event="listening")
    if go:
        while not os.path.exists(go):
            if STOP:
                return 130
            time.sleep(0.01)
    started = time.monotonic()
    handle = add(ses, torrent, directory)
    for peer in peers:
        handle.connect_peer(split(peer))
    serve(ses, handle, started=started)
    return 0


def main():
    global STOP

    def stop(_signum, _frame):
        global STOP
        STOP = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("make")
    p.add_argument("file")
    p.add_argument("torrent")
    p.add_argument("--piece-size", type=int, default=1 << 20)
    p.add_argument("--url-seed", action="append", default=[])
    p = sub.add_parser("seed")
    p.add_argument("torrent")
    p.add_argument("dir")
    p.add_argument("--listen", required=True)
    p = sub.add_parser("get")
    p.add_argument("torrent")
    p.add_argument("dir")
    p.add_argument("--listen", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--go")
    args = parser.parse_args()
    if args.mode == "make":
        make(args.file, args.torrent, args.piece_size, args.url_seed)
        return 0
    if args.mode == "seed":
        return seed(args.torrent, args.dir, args.listen)
    return get(args.torrent, args.dir, args.listen, args.peer, args.go)


if __name__ == "__main__":
    sys.exit(main())
