#!/usr/bin/env python3
"""The minimodel network lab: swarm scenarios between hosts in network
namespaces, through the `minimodel` binary. See docs/lab.md.

    lab/lab.py [--ci | --figures | --slow | --all | SCENARIO...] [--repeat N]
               [--bin PATH] [--relay PATH] [--workdir DIR] [--keep] [--results FILE]
    lab/lab.py --list

Exit status: 0 when every scenario passed, 1 when one failed, 2 when the lab
cannot run here (not root, no `ip`/`tc`, no namespaces, veth, bridge or
tbf) or could not be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netlab  # noqa: E402
from netlab import Lab, LabError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BLAST = Path(__file__).resolve().parent / "blast.py"
MiB = 1 << 20
MODEL = "labmodel"
PORT = 4433
SEED_CAP = "100mbit"
PEER_CAP = "1gbit"


class Failed(Exception):
    """A scenario's assertion did not hold."""


def say(text=""):
    # A closed standard output (the reader went away) must not stop the
    # teardown halfway.
    try:
        print(text, flush=True)
    except OSError:
        pass


# --- binaries -----------------------------------------------------------------


def cargo_build(args, what):
    if shutil.which("cargo") is None:
        raise LabError(f"{what} is missing and cargo is not installed to build it")
    say(f"lab: building {what}: cargo {' '.join(args)}")
    done = subprocess.run(["cargo", *args], cwd=REPO)
    if done.returncode != 0:
        raise LabError(f"building {what} failed (cargo exit {done.returncode})")


def find_minimodel(given):
    """--bin, else $MINIMODEL_BIN, else the repo's release build (built if
    missing)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise LabError(f"--bin {given}: no such file")
        return path.resolve()
    default = REPO / "target" / "release" / "minimodel"
    if not default.is_file():
        cargo_build(["build", "--release", "--locked", "-p", "minimodel"], str(default))
    return default


class Relay:
    """Where the relay program is; built (dev profile) the first time a
    scenario needs it if neither build exists."""

    def __init__(self, given):
        self.given = given
        self._path = None

    def path(self):
        if self._path:
            return self._path
        if self.given:
            path = Path(self.given)
            if not path.is_file():
                raise LabError(f"--relay {self.given}: no such file")
            self._path = path.resolve()
            return self._path
        for profile in ("release", "debug"):
            path = REPO / "target" / profile / "examples" / "relay"
            if path.is_file():
                self._path = path
                return path
        cargo_build(
            ["build", "--locked", "-p", "minimodel-swarm", "--example", "relay"],
            "the relay (swarm/examples/relay.rs)",
        )
        self._path = REPO / "target" / "debug" / "examples" / "relay"
        return self._path


# --- a run --------------------------------------------------------------------


class Context:
    def __init__(self, args, workdir):
        self.bin = find_minimodel(args.bin or os.environ.get("MINIMODEL_BIN"))
        self.relay = Relay(args.relay or os.environ.get("LAB_RELAY"))
        self.workdir = Path(workdir)
        self.artifacts = {}
        self.results = []
        self.repeat = args.repeat
        self.attempt = 1

    def artifact(self, size):
        """A fixture of `size` bytes and its manifest, made once per run."""
        if size in self.artifacts:
            return self.artifacts[size]
        folder = self.workdir / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        slm = folder / f"{size}.slm"
        manifest = folder / f"{size}.manifest"
        subprocess.run(
            [self.bin, "fixture", slm, "--size", str(size)], check=True, stdout=subprocess.DEVNULL
        )
        done = subprocess.run(
            [self.bin, "--json", "manifest", slm, "--model-id", MODEL, "--publisher-id", "lab",
             "--license-route", "https://example.org/license",
             "--evidence-route", "https://example.org/evidence", "-o", manifest],
            check=True, stdout=subprocess.PIPE, text=True,
        )
        sha = json.loads(done.stdout.strip().splitlines()[-1])["artifact_sha256"]
        self.artifacts[size] = (slm, manifest, sha)
        return self.artifacts[size]

    def lab(self, name):
        return Lab(self.logdir(name), log=say)

    def logdir(self, name):
        """logs/NAME, or logs/NAME-runK when scenarios are repeated."""
        suffix = f"-run{self.attempt}" if self.repeat > 1 else ""
        return self.workdir / "logs" / f"{name}{suffix}"

    def scratch(self, name):
        path = self.workdir / "runs" / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


# --- steps --------------------------------------------------------------------


def measure_uplink(sender, receiver, count=16 * MiB, port=5201):
    """Bytes per second of a plain TCP transfer from `sender` to `receiver`
    (through `sender`'s cap)."""
    recv = receiver.popen(["python3", BLAST, "recv", receiver.ip4, port], "blast-recv")
    deadline = time.monotonic() + 10
    while "ready" not in recv.stdout_text():
        if recv.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the TCP receiver did not start: {recv.tail()}")
        time.sleep(0.02)
    sender.run(["python3", BLAST, "send", receiver.ip4, port, count], timeout=120)
    if recv.wait(30) != 0:
        raise Failed(f"the TCP measurement failed: {recv.tail()}")
    line = recv.stdout_text().strip().splitlines()[-1]
    return json.loads(line)["rate"]


def parse_offer(path):
    """(peer id, [addresses]) of an offer: v0 `peer` "ID@HOST:PORT", or a
    later version's `addrs` list for one peer id."""
    offer = json.loads(Path(path).read_text())
    peer = offer.get("peer")
    peer_id = offer.get("peer_id") or offer.get("id")
    addrs = list(offer.get("addrs") or [])
    if isinstance(peer, str) and "@" in peer:
        head, tail = peer.split("@", 1)
        peer_id = peer_id or head
        if not addrs:
            addrs = [tail]
    elif isinstance(peer, str) and not peer_id:
        peer_id = peer
    if not peer_id or not addrs:
        raise Failed(f"offer {path}: no peer id and address in {offer}")
    return peer_id, addrs


def start_seeder(ctx, host, size, listen, extra=(), identity=None, name="seed", offer=None):
    """Starts `minimodel seed` in `host`; returns (process, offer path) once
    the offer is written."""
    slm, manifest, _ = ctx.artifact(size)
    offer = offer or ctx.workdir / "runs" / f"{host.ns}-{name}.offer.json"
    offer.parent.mkdir(parents=True, exist_ok=True)
    if offer.exists():
        offer.unlink()
    argv = [ctx.bin, "--json", "seed", manifest, slm, "--listen", listen, "--offer", offer,
            "--yes", *extra]
    if identity:
        argv += ["--identity", identity]
    proc = host.popen(argv, name)
    deadline = time.monotonic() + 60
    while True:
        if offer.exists():
            try:
                parse_offer(offer)
                return proc, offer
            except (ValueError, Failed):
                pass
        if proc.poll() is not None:
            raise Failed(f"{proc.name} exited {proc.returncode} before writing its offer:\n"
                         f"{proc.tail()}")
        if time.monotonic() > deadline:
            raise Failed(f"{proc.name} wrote no offer in 60 s:\n{proc.tail()}")
        time.sleep(0.02)


def start_fetch(ctx, host, size, sources, out, serve=None, extra=(), name="fetch"):
    _, manifest, _ = ctx.artifact(size)
    argv = [ctx.bin, "--json", "fetch", manifest, *sources, "-o", out, "--yes"]
    if serve:
        argv += ["--serve", "--listen", serve]
    argv += list(extra)
    return host.popen(argv, name)


def start_relay(ctx, host, listen, upstream, extra=(), name="relay"):
    proc = host.popen([ctx.relay.path(), "--listen", listen, "--upstream", upstream, *extra], name)
    deadline = time.monotonic() + 10
    while "relay listening" not in proc.stdout_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"{proc.name} did not start:\n{proc.tail()}")
        time.sleep(0.02)
    return proc


def wait_all(procs, timeout):
    """Waits for every process; those still running after `timeout` s are
    stopped and named."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in procs):
            return []
        time.sleep(0.01)
    late = [p for p in procs if p.poll() is None]
    for p in late:
        p.stop()
    return late


def check_download(proc, out, sha, problems):
    """Exit 0, a receipt for the right bytes, and no peer blamed in it.
    Appends what is wrong to `problems`; returns the receipt or None."""
    if proc.returncode != 0:
        problems.append(f"{proc.name} exited {proc.returncode}:\n{indent(proc.tail())}")
    receipt_path = Path(out) / f"{MODEL}.receipt.json"
    if not receipt_path.exists():
        problems.append(f"{proc.name}: no receipt in {out}")
        return None
    receipt = json.loads(receipt_path.read_text())
    if receipt.get("artifact_sha256") != sha:
        problems.append(f"{proc.name}: receipt names {receipt.get('artifact_sha256')}, not {sha}")
    for peer in receipt.get("source", {}).get("peers", []):
        if peer.get("bad_chunks", 0) != 0 or peer.get("banned"):
            problems.append(
                f"{proc.name}: peer {peer.get('address')} has bad_chunks "
                f"{peer.get('bad_chunks')}, banned {peer.get('banned')}"
            )
    return receipt


def indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def fail_if(problems):
    if problems:
        raise Failed("\n".join(problems))


def bits(rate):
    return rate * 8 / 1e6


# --- scenarios ----------------------------------------------------------------


def swarm(ctx, name, peers, size, timeout):
    """One seeder capped at 100 Mbit, `peers` `fetch --serve` peers at 1 Gbit,
    all given only the seeder's offer. Every peer completes with exit 0 and a
    receipt that blames nobody; reports time to the last verified file over
    the lower bound, and the seeder's upload in copies."""
    run_dir = ctx.scratch(name)
    slm, manifest, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=SEED_CAP)
        hosts = [lab.add_host(f"p{i}", cap=PEER_CAP) for i in range(1, peers + 1)]
        lab.wait_reachable()
        u_s = measure_uplink(seeder, hosts[0])
        peer_uplink = netlab._rate_bits(PEER_CAP) / 8
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT))
        tx0 = seeder.tx_bytes()
        t0 = time.monotonic()
        fetches = []
        for host in hosts:
            out = run_dir / host.name
            fetches.append(
                (start_fetch(ctx, host, size, ["--offer", offer], out, serve=host.addr(PORT)), out)
            )
        late = wait_all([p for p, _ in fetches], timeout)
        tx1 = seeder.tx_bytes()
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    receipts = [check_download(p, out, sha, problems) for p, out in fetches]
    ends = [p.ended - t0 for p, _ in fetches if p.returncode == 0]
    elapsed = max(ends) if len(ends) == peers else None
    bound = max(size / u_s, peers * size / (u_s + peers * peer_uplink))
    from_seeder = []
    wasted = [r["source"].get("bytes_wasted", 0) for r in receipts if r]
    for receipt in receipts:
        if receipt:
            chunks = [p["chunks"] for p in receipt["source"]["peers"]
                      if p["address"].startswith(seeder.ip4 + ":")]
            from_seeder.append(sum(chunks))
    result = {
        "scenario": name,
        "peers": peers,
        "bytes": size,
        "seeder_uplink_MBps": round(u_s / 1e6, 2),
        "bound_s": round(bound, 2),
        "last_peer_s": round(elapsed, 2) if elapsed else None,
        "time_over_bound": round(elapsed / bound, 3) if elapsed else None,
        "completed_peer_s": [round(e, 2) for e in sorted(ends)],
        "seeder_tx_bytes": tx1 - tx0,
        "seeder_copies": round((tx1 - tx0) / size, 3),
        "chunks_from_seeder_per_peer": from_seeder,
        "bytes_wasted_per_peer": wasted,
        "ok": not problems,
    }
    result["run"] = ctx.attempt
    ctx.results.append(result)
    say(f"  seeder uplink (TCP through {SEED_CAP}): {u_s / 1e6:.2f} MB/s ({bits(u_s):.1f} Mbit/s)")
    if elapsed:
        say(f"  bound max(F/u_s, N*F/(u_s+sum u_i)) = {bound:.2f} s; last peer verified at "
            f"{elapsed:.2f} s: time/bound {elapsed / bound:.3f}")
    else:
        say(f"  bound {bound:.2f} s; no time/bound: {peers - len(ends)} of {peers} peers failed")
    say(f"  peers that completed, at: {', '.join(f'{e:.2f}' for e in sorted(ends))} s")
    say(f"  seeder sent {tx1 - tx0} bytes on eth0 = {(tx1 - tx0) / size:.3f} copies; "
        f"chunks from the seeder per receipt {from_seeder}; bytes wasted {wasted}")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def seeders(ctx, name, count, size, timeout, impair=None, congestion=None):
    """`count` seeders capped at 100 Mbit, one non-serving fetcher. Reports
    the fetch's throughput as a fraction of the sum of the seeders' measured
    uplinks. With `impair` (relay arguments), each path goes through its own
    relay on a middle host."""
    run_dir = ctx.scratch(name)
    slm, manifest, sha = ctx.artifact(size)
    relays = []
    with ctx.lab(name) as lab:
        seeds = [lab.add_host(f"s{i}", cap=SEED_CAP) for i in range(1, count + 1)]
        fetcher = lab.add_host("f")
        middle = lab.add_host("r") if impair is not None else None
        lab.wait_reachable()
        u_s = measure_uplink(seeds[0], fetcher)
        extra = ["--congestion", congestion] if congestion else []
        sources = []
        for i, host in enumerate(seeds, 1):
            _, offer = start_seeder(ctx, host, size, host.addr(PORT), extra=extra)
            if middle is None:
                sources += ["--offer", offer]
            else:
                peer_id, _ = parse_offer(offer)
                relay_addr = middle.addr(7000 + i)
                relays.append(start_relay(ctx, middle, relay_addr, host.addr(PORT),
                                          [*impair, "--seed", str(i)], name=f"relay{i}"))
                sources += ["--peer", f"{peer_id}@{relay_addr}"]
        tx0 = [h.tx_bytes() for h in seeds]
        t0 = time.monotonic()
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, sources, out)
        late = wait_all([fetch], timeout)
        tx1 = [h.tx_bytes() for h in seeds]
        for relay in relays:
            relay.stop()
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    receipt = check_download(fetch, out, sha, problems)
    elapsed = (fetch.ended or time.monotonic()) - t0
    rate = size / elapsed
    sent = [b - a for a, b in zip(tx0, tx1)]
    result = {
        "scenario": name,
        "seeders": count,
        "bytes": size,
        "impairment": " ".join(impair) if impair else None,
        "congestion": congestion or "default",
        "seeder_uplink_MBps": round(u_s / 1e6, 2),
        "fetch_s": round(elapsed, 2),
        "receipt_duration_s": receipt["source"]["duration_ms"] / 1e3 if receipt else None,
        "throughput_MBps": round(rate / 1e6, 2),
        "fraction_of_caps": round(rate / (count * u_s), 3),
        "seeders_sent_copies": round(sum(sent) / size, 3),
        "per_seeder_chunks": [p["chunks"] for p in receipt["source"]["peers"]] if receipt else None,
        "relays": [r.stdout_text().strip().splitlines()[-1] for r in relays],
        "ok": not problems,
    }
    result["run"] = ctx.attempt
    ctx.results.append(result)
    say(f"  seeder uplink (TCP through {SEED_CAP}): {u_s / 1e6:.2f} MB/s; sum of {count}: "
        f"{count * u_s / 1e6:.2f} MB/s")
    if problems:
        result["throughput_MBps"] = result["fraction_of_caps"] = None
        say(f"  the fetch of {size // MiB} MiB failed after {elapsed:.2f} s; "
            f"seeders sent {sum(sent) / size:.3f} copies")
    else:
        say(f"  fetch of {size // MiB} MiB: {elapsed:.2f} s, {rate / 1e6:.2f} MB/s = "
            f"{rate / (count * u_s):.3f} of the caps; seeders sent {sum(sent) / size:.3f} copies")
    for relay in relays:
        say(f"  {relay.name}: {relay.stdout_text().strip().splitlines()[-1]}")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def relay_smoke(ctx, name, delay="10ms", loss="0.01", size=4 * MiB, timeout=120):
    """One seeder capped at 100 Mbit, one non-serving fetcher, the path
    through the relay on a third host with `delay` and `loss` each way: the
    fetch completes and blames nobody, and the relay did drop datagrams."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=SEED_CAP)
        fetcher = lab.add_host("f")
        middle = lab.add_host("r")
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT))
        peer_id, _ = parse_offer(offer)
        relay = start_relay(ctx, middle, middle.addr(7001), seeder.addr(PORT),
                            ["--delay", delay, "--loss", loss])
        t0 = time.monotonic()
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, ["--peer", f"{peer_id}@{middle.addr(7001)}"], out)
        late = wait_all([fetch], timeout)
        relay.stop()
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    check_download(fetch, out, sha, problems)
    stats = relay.stdout_text().strip().splitlines()[-1]
    if float(loss) > 0 and "dropped 0," in stats:
        problems.append(f"the relay dropped nothing at loss {loss}: {stats}")
    elapsed = (fetch.ended or time.monotonic()) - t0
    ctx.results.append({"scenario": name, "bytes": size, "delay": delay, "loss": loss,
                        "fetch_s": round(elapsed, 2), "relay": stats, "ok": not problems})
    say(f"  {size // MiB} MiB through the relay in {elapsed:.2f} s; {stats}")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


# --- reachability and reconnects -----------------------------------------------


def restart(ctx, name):
    """A seeder killed (SIGKILL) mid-download and restarted 3 s later with the
    same identity and address is dialed again, and the fetch finishes."""
    size = 48 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=SEED_CAP)
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        identity = run_dir / "seed-identity"
        seed, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT), identity=identity)
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, ["--offer", offer], out)
        time.sleep(1.5)
        if fetch.poll() is not None:
            raise Failed(f"the fetch ended ({fetch.returncode}) before the seeder was killed:\n"
                         f"{indent(fetch.tail())}")
        seed.signal(9)
        seed.wait(5)
        time.sleep(3)
        if fetch.poll() is not None:
            raise Failed(f"the fetch exited {fetch.returncode} 3 s after its only seeder died:\n"
                         f"{indent(fetch.tail())}")
        start_seeder(ctx, seeder, size, seeder.addr(PORT), identity=identity, name="seed-again")
        late = wait_all([fetch], 120)
    problems = [f"{p.name} did not finish in 120 s after the restart" for p in late]
    check_download(fetch, out, sha, problems)
    ctx.results.append({"scenario": name, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def offer_addresses(ctx, name):
    """`seed --listen 0.0.0.0:P --offer F` on a host with 10.x and ULA
    addresses writes an offer with no loopback address, and a fetch from
    another host with that offer completes."""
    size = 4 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s")
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, f"0.0.0.0:{PORT}")
        _, addrs = parse_offer(offer)
        problems = []
        if any(a.startswith("127.") or a.startswith("[::1]") or a.startswith("localhost")
               for a in addrs):
            problems.append(f"the offer names a loopback address: {addrs}")
        if not any(a.startswith(seeder.ip4 + ":") for a in addrs):
            problems.append(f"the offer does not name the host's address {seeder.ip4}: {addrs}")
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, ["--offer", offer], out)
        late = wait_all([fetch], 60)
    problems += [f"{p.name} did not finish in 60 s" for p in late]
    check_download(fetch, out, sha, problems)
    ctx.results.append({"scenario": name, "addrs": addrs, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def public_addr(ctx, name):
    """`--public-addr` (repeatable): a seeder behind a port forward (the relay
    on another host, no impairment) names the forward's address and its ULA
    address in its offer; a fetch given that offer completes. The same flag
    on `fetch --serve` puts its address in the offer the fetch prints."""
    size = 4 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s")
        fetcher = lab.add_host("f")
        middle = lab.add_host("r")
        lab.wait_reachable()
        forward = middle.addr(7001)
        v6 = seeder.addr(PORT, family=6)
        _, offer = start_seeder(ctx, seeder, size, f"[::]:{PORT}",
                                extra=["--public-addr", forward, "--public-addr", v6])
        _, addrs = parse_offer(offer)
        problems = []
        for wanted in (forward, v6):
            if wanted not in addrs:
                problems.append(f"--public-addr {wanted} is not in the offer: {addrs}")
        relay = start_relay(ctx, middle, forward, seeder.addr(PORT))
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, ["--offer", offer], out,
                            serve=f"0.0.0.0:{PORT}",
                            extra=["--public-addr", fetcher.addr(PORT + 1)])
        late = wait_all([fetch], 60)
        relay.stop()
    problems += [f"{p.name} did not finish in 60 s" for p in late]
    check_download(fetch, out, sha, problems)
    printed = [json.loads(line) for line in fetch.stdout_text().splitlines()
               if line.startswith("{") and '"offer"' in line]
    if not any(fetcher.addr(PORT + 1) in json.dumps(o) for o in printed):
        problems.append(f"fetch --serve --public-addr {fetcher.addr(PORT + 1)} printed no offer "
                        f"naming it: {printed}")
    ctx.results.append({"scenario": name, "addrs": addrs, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def dead_and_live(ctx, name):
    """A peer given at a dead address first and at its live one second
    (`--peer ID@DEAD --peer ID@LIVE`) is reached; the fetch completes."""
    size = 4 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s")
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT))
        peer_id, _ = parse_offer(offer)
        dead = f"{netlab.SUBNET4.format(250)}:{PORT}"  # on the bridge's subnet, no host
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size,
                            ["--peer", f"{peer_id}@{dead}", "--peer",
                             f"{peer_id}@{seeder.addr(PORT)}"], out)
        late = wait_all([fetch], 90)
    problems = [f"{p.name} did not finish in 90 s" for p in late]
    check_download(fetch, out, sha, problems)
    ctx.results.append({"scenario": name, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def ipv6_ula(ctx, name):
    """A seeder on a host with only an IPv6 ULA address, listening on it,
    serves a non-serving fetch on another host that uses its offer."""
    size = 4 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        fetcher = lab.add_host("f")
        seeder = lab.add_host("s", v4=False)
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT, family=6))
        out = run_dir / "f"
        fetch = start_fetch(ctx, fetcher, size, ["--offer", offer], out)
        late = wait_all([fetch], 60)
    problems = [f"{p.name} did not finish in 60 s" for p in late]
    check_download(fetch, out, sha, problems)
    ctx.results.append({"scenario": name, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def ipv6_loopback(ctx, name):
    """A seeder listening on [::1] serves a non-serving fetch on the same
    host that uses its offer."""
    size = 4 * MiB
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        host = lab.add_host("h")
        _, offer = start_seeder(ctx, host, size, f"[::1]:{PORT}")
        out = run_dir / "f"
        fetch = start_fetch(ctx, host, size, ["--offer", offer], out)
        late = wait_all([fetch], 60)
    problems = [f"{p.name} did not finish in 60 s" for p in late]
    check_download(fetch, out, sha, problems)
    ctx.results.append({"scenario": name, "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


LOSSY = ["--delay", "50ms", "--loss", "0.01"]
# The same relays with no delay and no loss: what the relay itself costs.
CLEAN_RELAY = ["--delay", "0ms", "--loss", "0"]
# Delay without loss: what the round trip alone costs.
DELAYED = ["--delay", "50ms", "--loss", "0"]

SCENARIOS = {
    "swarm-4x48": lambda c, n: swarm(c, n, 4, 48 * MiB, 120),
    "swarm-8x48": lambda c, n: swarm(c, n, 8, 48 * MiB, 180),
    "swarm-4x256": lambda c, n: swarm(c, n, 4, 256 * MiB, 300),
    "swarm-8x256": lambda c, n: swarm(c, n, 8, 256 * MiB, 400),
    "seeders-4x256": lambda c, n: seeders(c, n, 4, 256 * MiB, 300),
    "seeders-4x256-relay": lambda c, n: seeders(c, n, 4, 256 * MiB, 300, impair=CLEAN_RELAY),
    "seeders-4x256-lossy": lambda c, n: seeders(c, n, 4, 256 * MiB, 900, impair=LOSSY),
    "seeders-4x256-lossy-bbr": lambda c, n: seeders(c, n, 4, 256 * MiB, 900, impair=LOSSY,
                                                    congestion="bbr"),
    "seeders-4x256-delay": lambda c, n: seeders(c, n, 4, 256 * MiB, 600, impair=DELAYED),
    "seeders-4x256-delay-bbr": lambda c, n: seeders(c, n, 4, 256 * MiB, 600, impair=DELAYED,
                                                    congestion="bbr"),
    "relay-smoke": relay_smoke,
    "relay-50ms": lambda c, n: relay_smoke(c, n, delay="50ms", size=16 * MiB, timeout=300),
    "restart": restart,
    "offer-addresses": offer_addresses,
    "public-addr": public_addr,
    "dead-and-live": dead_and_live,
    "ipv6-ula": ipv6_ula,
    "ipv6-loopback": ipv6_loopback,
}

SETS = {
    # What .ci/lab runs: a few minutes on two cores.
    "ci": ["swarm-4x48", "swarm-8x48", "seeders-4x256", "relay-smoke", "restart",
           "offer-addresses", "public-addr", "dead-and-live", "ipv6-ula", "ipv6-loopback"],
    # The swarm figures of docs/performance.md; minutes each.
    "figures": ["swarm-4x48", "swarm-8x48", "swarm-4x256", "swarm-8x256", "seeders-4x256",
                "seeders-4x256-relay", "seeders-4x256-delay", "seeders-4x256-delay-bbr",
                "seeders-4x256-lossy", "seeders-4x256-lossy-bbr"],
    # Behaviour checks too slow for CI (minutes on a lossy path).
    "slow": ["relay-50ms"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help="scenario names (see --list)")
    for name in SETS:
        parser.add_argument(f"--{name}", action="store_true", help=f"the {name} set")
    parser.add_argument("--all", action="store_true", help="every scenario")
    parser.add_argument("--list", action="store_true", help="list scenarios and sets")
    parser.add_argument("--repeat", type=int, default=1, help="run each scenario N times")
    parser.add_argument("--bin", help="the minimodel binary (default: $MINIMODEL_BIN, else "
                        "target/release/minimodel, built if missing)")
    parser.add_argument("--relay", help="the relay program (default: $LAB_RELAY, else "
                        "target/{release,debug}/examples/relay, built if missing)")
    parser.add_argument("--workdir", help="where files go (default: a new directory in /tmp, "
                        "deleted at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--results", help="write the results as JSON lines to this file")
    args = parser.parse_args()

    if args.list:
        for set_name, names in SETS.items():
            say(f"--{set_name}: {' '.join(names)}")
        for name in SCENARIOS:
            say(name)
        return 0
    names = list(args.scenarios)
    for set_name, members in SETS.items():
        if getattr(args, set_name):
            names += members
    if args.all:
        names = list(SCENARIOS)
    if not names:
        parser.error("name scenarios or a set (--ci, --figures, --slow, --all); see --list")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; see --list")

    netlab.install_signal_handlers()
    made_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmlab-"))
    failures = []
    try:
        netlab.require_capabilities()
        netlab.clean_leftovers(log=say)
        ctx = Context(args, workdir)
        say(f"lab: binary {ctx.bin}; work directory {workdir}")
        for name in names:
            for attempt in range(1, args.repeat + 1):
                label = name if args.repeat == 1 else f"{name} (run {attempt}/{args.repeat})"
                say(f"== {label}")
                started = time.monotonic()
                ctx.attempt = attempt
                try:
                    SCENARIOS[name](ctx, name)
                    say(f"   PASS {label} ({time.monotonic() - started:.1f} s)")
                except Failed as error:
                    failures.append((label, str(error)))
                    say(f"   FAIL {label} ({time.monotonic() - started:.1f} s):\n{indent(str(error))}")
                    say(f"   logs: {ctx.logdir(name)}")
        if args.results:
            with open(args.results, "a") as out:
                for result in ctx.results:
                    out.write(json.dumps(result) + "\n")
    except LabError as error:
        say(f"lab: cannot run: {error}")
        return 2
    except (KeyboardInterrupt, SystemExit) as stop:
        failures.append(("interrupted", ""))
        say("lab: interrupted; the lab's processes and namespaces are gone")
        code = stop.code if isinstance(stop, SystemExit) else 130
        return code if isinstance(code, int) else 130
    finally:
        if args.keep:
            say(f"lab: work directory kept: {workdir}")
        elif made_workdir and not failures:
            shutil.rmtree(workdir, ignore_errors=True)
        elif made_workdir:
            for run in (workdir / "runs", workdir / "artifacts"):
                shutil.rmtree(run, ignore_errors=True)
            say(f"lab: logs kept in {workdir}")
    if args.repeat > 1:
        for name in dict.fromkeys(names):
            failed = sum(1 for label, _ in failures if label.startswith(f"{name} "))
            say(f"lab: {name}: {args.repeat - failed} of {args.repeat} runs passed")
    if failures:
        say(f"lab: {len(failures)} failed: {', '.join(label for label, _ in failures)}")
        return 1
    say("lab: every scenario passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
