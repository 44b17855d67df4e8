"""libtorrent's side of cli/tests/channel_libtorrent.rs: another Mainline
DHT implementation that stores, reads and writes a publisher's channel
item (BEP 44, docs/channel.md). Runs with Debian's python3-libtorrent
(`/usr/bin/python3`).

    channel_libtorrent.py node
        A libtorrent DHT node on 127.0.0.1 (a DHT of its own), until its
        standard input closes. Prints {"event": "node", "addr": "127.0.0.1:PORT"}
        once it listens.
    channel_libtorrent.py get NODE KEY-HEX SALT
        Another libtorrent session, bootstrapped to NODE, asks the DHT for
        the mutable item of KEY and SALT (`dht_get_mutable_item`) until it
        reports an authoritative answer (or 30 s pass). Prints one
        {"event": "item", ...} with libtorrent's fields: seq, authoritative,
        key, salt, signature (hex), the bytes of `v` (a byte string, hex),
        and those bytes decoded by libtorrent's bdecode (dictionaries with
        text keys, integers, lists, byte strings as hex).
    channel_libtorrent.py put NODE SEED-HEX SALT DATA-HEX
        Another libtorrent session, bootstrapped to NODE, signs and puts a
        mutable item (`dht_put_mutable_item`) under the Ed25519 key of the
        32-byte SEED: its `v` is the byte string DATA, at the sequence
        number libtorrent finds plus one. Prints
        {"event": "put", "seq": N, "stored": N, "key": hex, "signature": hex}.

Everything else is libtorrent's default but the DHT's loopback rules: it
keeps nodes and search results on 127.0.0.1 only with
dht_restrict_routing_ips, dht_restrict_search_ips and
dht_prefer_verified_node_ids off.
"""

import hashlib
import json
import select
import sys
import time

try:
    import libtorrent as lt
except ImportError as error:
    sys.exit(
        f"python3-libtorrent is not installed for {sys.executable}: {error} "
        "(Debian: apt-get install python3-libtorrent)"
    )

TIMEOUT_S = 30


def emit(**fields):
    print(json.dumps(fields), flush=True)


def session(bootstrap):
    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": True,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "dht_bootstrap_nodes": bootstrap,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_prefer_verified_node_ids": False,
            "alert_mask": lt.alert.category_t.dht_notification
            | lt.alert.category_t.dht_log_notification
            | lt.alert.category_t.error_notification,
        }
    )


def plain(value):
    """A decoded bencode value as JSON: byte strings as hex."""
    if isinstance(value, dict):
        return {key.decode() if isinstance(key, bytes) else key: plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return value.encode().hex()
    return value


def as_bytes(value):
    return value if isinstance(value, bytes) else value.encode("latin-1")


def node():
    ses = session("")
    deadline = time.time() + TIMEOUT_S
    while not ses.listen_port():
        if time.time() > deadline:
            sys.exit("libtorrent's DHT did not start listening")
        ses.wait_for_alert(200)
        ses.pop_alerts()
    emit(event="node", addr=f"127.0.0.1:{ses.listen_port()}")
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.2)
        if readable and not sys.stdin.readline():
            return
        # Alerts are only read to keep libtorrent's queue short.
        ses.pop_alerts()


def get(bootstrap, key_hex, salt):
    ses = session(bootstrap)
    key = bytes.fromhex(key_hex)
    asked = 0.0
    deadline = time.time() + TIMEOUT_S
    found = None
    while time.time() < deadline and not (found and found["authoritative"]):
        if time.time() - asked > 2:
            # Again every 2 s: the first lookup may start before the
            # bootstrap node answered.
            ses.dht_get_mutable_item(key, salt.encode())
            asked = time.time()
        ses.wait_for_alert(200)
        for alert in ses.pop_alerts():
            if not isinstance(alert, lt.dht_mutable_item_alert):
                continue
            try:
                item = alert.item
            except RuntimeError:
                continue  # an empty answer: nothing found (yet)
            # An alert lives only until the next pop_alerts: copied now.
            found = dict(
                event="item",
                seq=alert.seq,
                authoritative=alert.authoritative,
                key=as_bytes(alert.key).hex(),
                salt=as_bytes(alert.salt).decode(),
                signature=as_bytes(alert.signature).hex(),
                # `v` is a byte string (the channel's value is bencoded
                # inside it, docs/channel.md): the binding hands its bytes
                # over.
                value=as_bytes(item["value"]).hex(),
                decoded=plain(lt.bdecode(as_bytes(item["value"]))),
            )
            if found["authoritative"]:
                break
    if found is None:
        sys.exit("libtorrent found no item")
    emit(**found)


def put(bootstrap, seed_hex, salt, data):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    seed = bytes.fromhex(seed_hex)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    # libtorrent's secret key is RFC 8032's expanded one: SHA-512 of the
    # seed, its first half clamped.
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 63
    expanded[31] |= 64
    ses = session(bootstrap)
    deadline = time.time() + TIMEOUT_S
    # The first put waits for the bootstrap node to answer.
    time.sleep(1)
    ses.dht_put_mutable_item(bytes(expanded), public, bytes.fromhex(data), salt.encode())
    while time.time() < deadline:
        ses.wait_for_alert(200)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.dht_put_alert):
                emit(
                    event="put",
                    seq=alert.seq,
                    stored=alert.num_success,
                    key=as_bytes(alert.public_key).hex(),
                    signature=as_bytes(alert.signature).hex(),
                )
                return
    sys.exit("libtorrent's put did not end")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "node" and not args:
        node()
    elif command == "get" and len(args) == 3:
        get(*args)
    elif command == "put" and len(args) == 4:
        put(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
