"""Following a publisher in the lab (docs/lab.md, "Following"): no web
server anywhere. A publisher at home seeds two versions of a model cut at
its parts (`slm-parts-merkle-v0`) and publishes each on its channel (a
`minimodel dht-node` on the internet is the DHT); followers behind home
routers follow the channel, with `follow` and with the companion's
follow. The second version's chunk list, with its chunks' lengths, comes
from the publisher's peer alone, so each follower copies what the first
version shares and moves only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from harness import (
    MODEL, PORT, REPO, Failed, MiB, chunk_size_of, fail_if, indent, json_events, parse_offer,
    say, start_companion, start_seeder, wait_all,
)

sys.path.append(str(REPO / "scripts"))
import slm_versions  # noqa: E402

# Every home's uplink (as lab/internet.py's HOME_UPLINK).
HOME_UPLINK = "20mbit"
# Where the DHT node listens.
DHT_PORT = 6881
# The followers' routers: one of each kind the punching scenarios use.
FOLLOWER_NATS = ("cone", "symmetric", "cone")
# The companion's lookups of one follow are at least this far apart
# (companion/src/follow.rs, MIN_LOOKUP_INTERVAL), plus a margin.
LOOKUP_INTERVAL_S = 61
# What a follower may take from peers for version 2, over the bytes of
# the parts that changed, and over what the cut at parts should move.
MOST_OVER_CHANGED = 1.1
MOST_OVER_EXPECTED = 1.1
# What `follow` says when the chunk list came from a peer.
READ_FROM_PEER = "the new version's chunk list is read from peer "


def _versions(folder, size):
    """v1 and v2 `.slm` files in `folder`: v2 with its tokenizer grown by
    1,000 tokens (the embedding and output tensors grown by their rows,
    the tensor table and header changed with them), its 14 other tensors
    unchanged. Returns (paths, v2's changed parts as (name, bytes), the
    two files' bytes)."""
    v1 = slm_versions.model(size, vocab=4000)
    v2 = slm_versions.model(size, vocab=4000, extra_rows=1000)
    paths = []
    for label, data in (("v1", v1), ("v2", v2)):
        path = folder / f"{label}.slm"
        path.write_bytes(data)
        paths.append(path)
    return paths, slm_versions.changed_parts(v1, v2), (v1, v2)


def _signed(ctx, host, folder, slm, label):
    """A manifest of `slm` cut at its parts, signed with the publisher's
    key; returns (its path, its sha256)."""
    unsigned = folder / f"{label}.unsigned"
    manifest = folder / f"{label}.manifest"
    host.run([ctx.bin, "-q", "manifest", slm, "--model-id", MODEL, "--publisher-id", "lab",
              "--license-route", "https://example.org/license",
              "--evidence-route", "https://example.org/evidence",
              "--chunk-scheme", "slm-parts-merkle-v0", "-o", unsigned])
    host.run([ctx.bin, "-q", "sign", unsigned, "--key", folder / "pub.key", "-o", manifest])
    return manifest, hashlib.sha256(manifest.read_bytes()).hexdigest()


def _dht_node(ctx, host):
    proc = host.popen([ctx.bin, "--json", "dht-node", "--listen", host.addr(DHT_PORT)], "dht-node")
    deadline = time.monotonic() + 15
    while not json_events(proc, "dht-node"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the DHT node did not start:\n{indent(proc.tail())}")
        time.sleep(0.05)
    return proc


def _publish(ctx, host, folder, manifest, offer, dht):
    """`publish` of `manifest` on the channel, naming the seeder of
    `offer` at the address its offer names first (its router's mapping)."""
    peer_id, addrs = parse_offer(offer)
    host.run([ctx.bin, "publish", manifest, "--key", folder / "pub.key",
              "--peer", f"{peer_id}@{addrs[0]}", "--dht-bootstrap", dht,
              "--channels", folder / "channels"])
    return addrs[0]


def _env(data):
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(data)
    return env


def _follow_round(ctx, followers, folder, dht, label, timeout):
    """One `follow` round on every follower at once; returns the
    processes (each done or stopped)."""
    procs = []
    for host, out in followers:
        argv = [ctx.bin, "follow", folder / "pub.key.pub", "--model-id", MODEL, "-o", out,
                "--yes", "--dht-bootstrap", dht, "--channels", out.parent / f"{out.name}-channels"]
        procs.append(host.popen(argv, f"follow-{label}", env=_env(out.parent / f"{out.name}-data")))
    wait_all(procs, timeout)
    return procs


def _receipt(out, manifest_sha):
    path = out / manifest_sha / f"{MODEL}.receipt.json"
    return json.loads(path.read_text()) if path.exists() else None


def _from_peers(receipt):
    return sum(peer["bytes"] for peer in receipt["source"]["peers"])


def _check_version(who, receipt, artifact_sha, problems):
    if receipt is None:
        problems.append(f"{who}: no receipt")
        return False
    if receipt["artifact_sha256"] != artifact_sha:
        problems.append(f"{who}: the receipt names {receipt['artifact_sha256']}, "
                        f"not {artifact_sha}")
        return False
    return True


# Asks the companion's API (argv: the API's URL, the token file, the path)
# for a lookup now; prints the status.
LOOKUP = (
    "import sys,time,urllib.error,urllib.request\n"
    "token=open(sys.argv[2]).read().strip()\n"
    "for attempt in (1,2):\n"
    "    req=urllib.request.Request(sys.argv[1].rstrip('/')+sys.argv[3],method='POST',data=b'',"
    "headers={'Authorization':'Bearer '+token})\n"
    "    try:\n"
    "        print(urllib.request.urlopen(req,timeout=10).status); sys.exit(0)\n"
    "    except urllib.error.HTTPError as e:\n"
    "        print(e.code, e.read().decode(errors='replace'))\n"
    "        if e.code!=429 or attempt==2: sys.exit(1)\n"
    "        time.sleep(5)\n"
)


def _companion_receipt(lib, manifest_sha):
    """The receipt of the companion's download of the manifest
    `manifest_sha`, once it has one."""
    for path in lib.rglob(f"{MODEL}.receipt.json"):
        try:
            receipt = json.loads(path.read_text())
        except ValueError:
            continue
        if receipt.get("manifest_sha256") == manifest_sha:
            return receipt
    return None


def _wait_companion_receipt(lib, manifest_sha, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = _companion_receipt(lib, manifest_sha)
        if receipt is not None:
            return receipt
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    return None


def follow_homes(ctx, name, size=16 * MiB, timeout=120):
    """A publisher at home (a cone router running miniupnpd, 20 Mbit) and
    three followers at homes of their own (cone, symmetric, cone; 20
    Mbit each), plus a fourth home running the companion; a `minimodel
    dht-node` on the internet is the DHT. No web server anywhere: the
    manifests name no chunk-list-route and nobody is given a mirror.
    The publisher makes v1 and v2 of a model cut at its parts (v2: the
    tokenizer grown by 1,000 tokens, so the embedding and output tensors,
    the tensor table and the header changed, 14 of 16 tensors not),
    seeds v1 (`seed`, which maps its port) and publishes it naming only
    that seeder; the followers run one `follow` round each and the
    companion follows with `--auto`: each gets v1 verified. Then it
    seeds v2 and publishes it: a second `follow` round, and a lookup the
    lab asks the companion for (its API, once a minute has passed since
    its first). Asserted: each gets v2 verified, its receipt counts
    chunks reused from v1, the bytes peers sent it (its receipt) and the
    bytes its interface received during the round are each at most 1.1
    times the bytes of v2's changed parts, the bytes peers sent it at most
    1.1 times what v2 cut at its parts should move (computed apart from
    the binary), and each `follow` says it read the chunk list from a
    peer."""
    run_dir = ctx.scratch(name)
    files = run_dir / "files"
    files.mkdir()
    problems = []
    rows = []
    (v1_slm, v2_slm), changed, (v1_bytes, v2_bytes) = _versions(files, size)
    changed_bytes = sum(n for _, n in changed)
    shas = {label: hashlib.sha256(path.read_bytes()).hexdigest()
            for label, path in (("v1", v1_slm), ("v2", v2_slm))}
    with ctx.lab(name) as lab:
        stun = lab.add_stun_server()
        dht_host = lab.add_internet_host("d")
        pub_home = lab.add_home("hp", nat="cone", cap=HOME_UPLINK)
        publisher = pub_home.add_host("p")
        homes = [lab.add_home(f"h{i}", nat=nat, cap=HOME_UPLINK)
                 for i, nat in enumerate(FOLLOWER_NATS, 1)]
        hosts = [home.add_host(f"f{i}") for i, home in enumerate(homes, 1)]
        companion_home = lab.add_home("hc", nat="cone", cap=HOME_UPLINK)
        companion_host = companion_home.add_host("c")
        lab.wait_reachable()
        pub_home.start_upnp(stun)
        _dht_node(ctx, dht_host)
        dht = dht_host.addr(DHT_PORT)
        publisher.run([ctx.bin, "-q", "key", "new", files / "pub.key"])
        v1_manifest, v1_sha = _signed(ctx, publisher, files, v1_slm, "v1")
        v2_manifest, v2_sha = _signed(ctx, publisher, files, v2_slm, "v2")
        # What the cut at parts should move, computed apart from the
        # binary (scripts/slm_versions.py; its pieces of padding between
        # parts make it a few bytes off).
        expected, _ = slm_versions.moved_bytes(v1_bytes, v2_bytes, chunk_size_of(v2_manifest))
        _, v1_offer = start_seeder(ctx, publisher, None, f"0.0.0.0:{PORT}",
                                   files=(v1_manifest, v1_slm), name="seed-v1",
                                   extra=["--keyring", files / "publisher.keyring"])
        v1_addr = _publish(ctx, publisher, files, v1_manifest, v1_offer, dht)
        followers = [(host, run_dir / host.name) for host in hosts]
        lib = run_dir / "library"
        companion = start_companion(ctx, companion_host, lib, ["--dht-bootstrap", dht])
        companion_host.run([ctx.bin, "-q", "companion", "follow", files / "pub.key.pub",
                            "--model-id", MODEL, "--auto", "--yes", "--library", lib])
        first_lookup = time.monotonic()
        procs = _follow_round(ctx, followers, files, dht, "v1", timeout)
        for (host, out), proc in zip(followers, procs):
            if proc.returncode != 0:
                problems.append(f"{host.name}: follow of v1 exit {proc.returncode}:\n"
                                f"{indent(proc.tail())}")
            _check_version(f"{host.name} v1", _receipt(out, v1_sha), shas["v1"], problems)
        v1_companion = _wait_companion_receipt(lib, v1_sha, companion, timeout)
        _check_version("the companion's v1", v1_companion, shas["v1"], problems)
        fail_if(problems)

        _, v2_offer = start_seeder(ctx, publisher, None, f"0.0.0.0:{PORT + 1}",
                                   files=(v2_manifest, v2_slm), name="seed-v2",
                                   extra=["--keyring", files / "publisher.keyring"])
        v2_addr = _publish(ctx, publisher, files, v2_manifest, v2_offer, dht)
        rx0 = {host.name: host.rx_bytes() for host, _ in followers}
        pub_tx0 = publisher.tx_bytes()
        t0 = time.monotonic()
        procs = _follow_round(ctx, followers, files, dht, "v2", timeout)
        round_s = time.monotonic() - t0
        rx = {host.name: host.rx_bytes() - rx0[host.name] for host, _ in followers}
        pub_tx = publisher.tx_bytes() - pub_tx0
        for (host, out), proc in zip(followers, procs):
            if proc.returncode != 0:
                problems.append(f"{host.name}: follow of v2 exit {proc.returncode}:\n"
                                f"{indent(proc.tail())}")
            receipt = _receipt(out, v2_sha)
            if _check_version(f"{host.name} v2", receipt, shas["v2"], problems):
                rows.append((host.name, receipt, rx[host.name]))
            if READ_FROM_PEER not in proc.stderr_text():
                problems.append(f"{host.name}: follow did not say it read v2's chunk list from a "
                                f"peer:\n{indent(proc.tail())}")

        wait = first_lookup + LOOKUP_INTERVAL_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        c_rx0 = companion_host.rx_bytes()
        path = f"/api/v1/follows/{_key_text(files)}/{MODEL}/lookup"
        api = json.loads((lib / "api.json").read_text())["url"]
        asked = companion_host.run(["python3", "-c", LOOKUP, api, lib / "token", path],
                                   check=False)
        if asked.returncode != 0:
            problems.append(f"the companion refused a lookup: {asked.stdout.strip()} "
                            f"{asked.stderr.strip()}")
        v2_companion = _wait_companion_receipt(lib, v2_sha, companion, timeout)
        if _check_version("the companion's v2", v2_companion, shas["v2"], problems):
            rows.append(("companion", v2_companion, companion_host.rx_bytes() - c_rx0))
    limit = MOST_OVER_CHANGED * changed_bytes
    for who, receipt, received in rows:
        source = receipt["source"]
        from_peers = _from_peers(receipt)
        if source["chunks_reused"] == 0:
            problems.append(f"{who}: v2 reused no chunk of v1")
        if from_peers > MOST_OVER_EXPECTED * expected:
            problems.append(f"{who}: peers sent {from_peers} bytes of v2, more than "
                            f"{MOST_OVER_EXPECTED} x the {expected} its cut at parts should move")
        if from_peers > limit:
            problems.append(f"{who}: peers sent {from_peers} bytes of v2, more than "
                            f"{MOST_OVER_CHANGED} x its changed parts' {changed_bytes}")
        if received > limit:
            problems.append(f"{who}: its interface received {received} bytes while it "
                            f"fetched v2, more than {MOST_OVER_CHANGED} x its changed parts' "
                            f"{changed_bytes}")
    say(f"  v2: {size / MiB:.0f} MiB, changed parts "
        f"{', '.join(name for name, _ in changed)}: {changed_bytes} bytes, of which the cut at "
        f"parts should move {expected}; publisher at "
        f"{v1_addr} (v1) and {v2_addr} (v2)")
    for who, receipt, received in rows:
        source = receipt["source"]
        say(f"  {who}: v2 verified, {source['chunks_reused']} of {receipt['chunk_count']} "
            f"chunks reused, {_from_peers(receipt)} bytes from peers "
            f"({_from_peers(receipt) / changed_bytes:.3f} of the changed parts), "
            f"{received} bytes received")
    say(f"  the follow round of v2 took {round_s:.1f} s; the publisher sent {pub_tx} bytes")
    ctx.results.append({
        "scenario": name, "changed_parts": changed, "changed_bytes": changed_bytes,
        "expected_moved": expected,
        "round_s": round(round_s, 2), "publisher_tx": pub_tx,
        "followers": [{"who": who, "chunks_reused": r["source"]["chunks_reused"],
                       "chunk_count": r["chunk_count"], "from_peers": _from_peers(r),
                       "received": received} for who, r, received in rows],
        "ok": not problems,
    })
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def _key_text(folder):
    """The publisher's key as the API's paths name it (mmpk1...)."""
    for line in Path(folder / "pub.key.pub").read_text().splitlines():
        if line.startswith("public-key:"):
            return line.split(":", 1)[1].strip()
    raise Failed(f"no public-key line in {folder / 'pub.key.pub'}")


SCENARIOS = {
    "follow-homes": follow_homes,
}
