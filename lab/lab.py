#!/usr/bin/env python3
"""The minimodel network lab: swarm scenarios between hosts in network
namespaces, through the `minimodel` binary (and, for comparison, a
libtorrent client). See docs/lab.md.

    lab/lab.py [--ci | --figures | --internet | --slow | --all | SCENARIO[:TOOL]...]
               [--tool minimodel|libtorrent|both] [--rate-scale S] [--chunk-size SIZE]
               [--peer-arg=ARG]...
               [--libtorrent-peers all|seeder] [--repeat N] [--bin PATH] [--relay PATH]
               [--workdir DIR] [--keep] [--results FILE]
    lab/lab.py --list

Exit status: 0 when every scenario passed, 1 when one failed, 2 when the lab
cannot run here (not root, no `ip`/`tc`, no namespaces, veth, bridge or
tbf; for the internet scenarios no `nft`, miniupnpd, coturn, natpmpc,
upnpc or python3-libtorrent; for the mirror scenarios no `openssl`) or
could not be set up.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bounds  # noqa: E402
import compare  # noqa: E402
import following  # noqa: E402
import internet  # noqa: E402
import library  # noqa: E402
import mirrors  # noqa: E402
import netlab  # noqa: E402
import relayed  # noqa: E402
import windows  # noqa: E402
from harness import (  # noqa: E402
    MODEL, PEER_CAP, PORT, SEED_CAP, TAMPER, Context, Failed, MiB, bits, check_download, fail_if,
    indent, measure_uplink, parse_offer, say, start_fetch, start_relay, start_seeder, wait_all,
)
from netlab import LabError  # noqa: E402


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
        peer_uplink = hosts[0].cap_bits / 8
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT), extra=ctx.seed_args)
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
    say(f"  seeder uplink (TCP through {seeder.cap}): {u_s / 1e6:.2f} MB/s ({bits(u_s):.1f} Mbit/s)")
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
    say(f"  seeder uplink (TCP through {seeds[0].cap}): {u_s / 1e6:.2f} MB/s; sum of {count}: "
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


def far(ctx, name, size, delay, loss, cap=None, congestion=None, timeout=600):
    """One connection on a long lossy path: one seeder (its uplink capped
    at `cap`, or uncapped), one non-serving fetcher, the path through the
    relay on a third host (1500-byte veths: QUIC's datagrams are those of
    a real path). Two fetches of `size` from the same seeder, one after
    the other: through the relay with `delay` each way and no loss, then
    with `delay` and `loss` each way. Reports each one's rate and the
    lossy one's over the clean one's: what random, non-congestive loss
    costs one connection."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    runs = {}
    problems = []
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=cap)
        fetcher = lab.add_host("f")
        middle = lab.add_host("r")
        lab.wait_reachable()
        extra = ["--congestion", congestion] if congestion else []
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT), extra=extra)
        peer_id, _ = parse_offer(offer)
        for label, impair in (("clean", ["--delay", delay, "--loss", "0"]),
                              ("lossy", ["--delay", delay, "--loss", loss])):
            relay_addr = middle.addr(7001)
            relay = start_relay(ctx, middle, relay_addr, seeder.addr(PORT), impair,
                                name=f"relay-{label}")
            out = run_dir / label
            t0 = time.monotonic()
            fetch = start_fetch(ctx, fetcher, size, ["--peer", f"{peer_id}@{relay_addr}"], out,
                                name=f"fetch-{label}")
            late = wait_all([fetch], timeout)
            relay.stop()
            problems += [f"{p.name} did not finish in {timeout} s" for p in late]
            check_download(fetch, out, sha, problems)
            elapsed = (fetch.ended or time.monotonic()) - t0
            runs[label] = {"fetch_s": round(elapsed, 2), "rate_MBps": round(size / elapsed / 1e6, 2),
                           "relay": relay.stdout_text().strip().splitlines()[-1]}
            shutil.rmtree(out, ignore_errors=True)
    ratio = None
    if not problems:
        ratio = runs["clean"]["fetch_s"] / runs["lossy"]["fetch_s"]
    result = {"scenario": name, "bytes": size, "delay_each_way": delay, "loss_each_way": loss,
              "cap": cap or "none", "congestion": congestion or "default", **runs,
              "lossy_over_clean": round(ratio, 3) if ratio else None, "ok": not problems}
    result["run"] = ctx.attempt
    ctx.results.append(result)
    for label, run in runs.items():
        say(f"  {label}: {size // MiB} MiB in {run['fetch_s']:.2f} s, {run['rate_MBps']:.2f} MB/s; "
            f"{run['relay']}")
    if ratio:
        say(f"  {delay} and {loss} loss each way, cap {cap or 'none'}: the lossy fetch keeps "
            f"{ratio:.3f} of the clean one's rate")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def share(ctx, name, size, timeout, controllers, cap="20mbit", settle=3.0):
    """Seeders in one host whose uplink is capped at `cap` (a home uplink,
    tbf with a 100 ms queue), one for each of the congestion controllers
    `controllers` (None: the default), each serving one non-serving
    fetcher in a host of its own; or, with `controllers` a number, one
    seeder with the default serving that many fetchers (one node's
    uploads to several peers). The fetches start together. Reports
    each one's share of the capped uplink from `settle` s after the start
    until the first fetch ends (the fetchers' received bytes, from their
    kernel counters), and how much of the cap the two used together.
    Fails only when a fetch fails: the shares are a figure."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=cap)
        one_node = isinstance(controllers, int)
        if one_node:
            controllers = [None] * controllers
        hosts = [lab.add_host(f"f{i}") for i in range(1, len(controllers) + 1)]
        lab.wait_reachable()
        offers = []
        for i, controller in enumerate(controllers):
            if one_node and offers:
                offers.append(offers[0])
                continue
            extra = ["--congestion", controller] if controller else []
            _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT + i), extra=extra,
                                    name=f"seed{i + 1}")
            offers.append(offer)
        t0 = time.monotonic()
        fetches = []
        for host, offer in zip(hosts, offers):
            out = run_dir / host.name
            fetches.append((start_fetch(ctx, host, size, ["--offer", offer], out), out))
        procs = [p for p, _ in fetches]
        while time.monotonic() < t0 + settle and all(p.poll() is None for p in procs):
            time.sleep(0.02)
        start = (time.monotonic(), [h.rx_bytes() for h in hosts])
        while time.monotonic() < t0 + timeout and all(p.poll() is None for p in procs):
            time.sleep(0.02)
        end = (time.monotonic(), [h.rx_bytes() for h in hosts])
        late = wait_all(procs, max(1.0, t0 + timeout - time.monotonic()))
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    for proc, out in fetches:
        check_download(proc, out, sha, problems)
    window = end[0] - start[0]
    if window < 1.0:
        problems.append(f"a fetch ended {window:.2f} s after the shares began to be counted: "
                        f"no shares to tell (a larger size would)")
    got = [b - a for a, b in zip(start[1], end[1])]
    cap_bytes = seeder.cap_bits / 8
    shares = [g / max(1, sum(got)) for g in got]
    names = [c or "default" for c in controllers]
    if one_node:
        names = [f"one node to {len(controllers)}"]
    result = {
        "scenario": name,
        "bytes": size,
        "cap": cap,
        "controllers": names,
        "window_s": round(window, 2),
        "shares": [round(x, 3) for x in shares],
        # An equal split is 1 / n each: the least share over it.
        "least_over_equal": round(min(shares) * len(shares), 3) if shares else None,
        "used_of_cap": round(sum(got) / (cap_bytes * window), 3) if window > 0 else None,
        "fetch_s": [round((p.ended or time.monotonic()) - t0, 2) for p in procs],
        "ok": not problems,
    }
    result["run"] = ctx.attempt
    ctx.results.append(result)
    say(f"  {' / '.join(names)} sharing {cap}: shares "
        f"{' / '.join(f'{x:.3f}' for x in shares)} over {window:.1f} s while both ran; "
        f"together {result['used_of_cap']} of the cap; fetches done at "
        f"{', '.join(f'{t:.1f}' for t in result['fetch_s'])} s")
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
        # When the link is up: a handshake packet lost at this loss rate
        # waits out QUIC's first probe timeout (about 1 s at its initial
        # RTT of 333 ms), which says nothing of how the transfer copes.
        connected = None
        deadline = t0 + timeout
        while connected is None and fetch.poll() is None and time.monotonic() < deadline:
            if '"event":"peer-connected"' in fetch.stdout_text():
                connected = time.monotonic()
            time.sleep(0.01)
        late = wait_all([fetch], max(0.0, deadline - time.monotonic()))
        relay.stop()
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    check_download(fetch, out, sha, problems)
    stats = relay.stdout_text().strip().splitlines()[-1]
    if float(loss) > 0 and re.search(r"dropped 0\b", stats):
        problems.append(f"the relay dropped nothing at loss {loss}: {stats}")
    if connected is None:
        problems.append("the fetch never said its peer was connected")
    ended = fetch.ended or time.monotonic()
    elapsed = ended - t0
    result = {"scenario": name, "bytes": size, "delay": delay, "loss": loss,
              "fetch_s": round(elapsed, 2), "relay": stats, "ok": not problems}
    if connected is not None:
        result["connect_s"] = round(connected - t0, 2)
        result["transfer_s"] = round(ended - connected, 2)
    ctx.results.append(result)
    link = f" (the link up at {connected - t0:.2f} s)" if connected is not None else ""
    say(f"  {size // MiB} MiB through the relay in {elapsed:.2f} s{link}; {stats}")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def check_catches_tamper(ctx, name, size=4 * MiB, timeout=60):
    """The lab's check of its own download check: one seeder, four fetches
    of its file on one host. One is left alone; the others run through
    lab/tamper.py, which, after the fetch exited 0 with its receipt
    written, inverts one bit of the delivered file, cuts its last byte, or
    removes it. Passes when `check_download` finds fault with each of the
    three and with nothing in the plain one: a check that trusted exit
    codes and receipts would pass all four."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    ways = ["none", "flip", "truncate", "remove"]
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s", cap=SEED_CAP)
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT))
        fetches = []
        for how in ways:
            out = run_dir / how
            wrap = () if how == "none" else ("python3", TAMPER, how, out / f"{MODEL}.slm", "--")
            fetches.append((how, start_fetch(ctx, fetcher, size, ["--offer", offer], out,
                                             name=f"fetch-{how}", wrap=wrap), out))
        late = wait_all([p for _, p, _ in fetches], timeout)
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    found = {}
    for how, proc, out in fetches:
        if proc.returncode != 0:
            problems.append(f"{proc.name} exited {proc.returncode}:\n{indent(proc.tail())}")
            continue
        seen = []
        check_download(proc, out, sha, seen)
        found[how] = seen
        if how == "none" and seen:
            problems.append("the check found fault with a fetch nobody changed:\n"
                            + indent("\n".join(seen)))
        if how != "none" and not seen:
            problems.append(f"the check passed a fetch whose delivered file was changed "
                            f"({how}) after its receipt was written")
    for how, seen in found.items():
        say(f"  {how}: " + ("; ".join(line.split(": ", 1)[-1] for line in seen) or "passed"))
    ctx.results.append({"scenario": name, "found": {k: len(v) for k, v in found.items()},
                        "ok": not problems})
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
    "share-default-cubic": lambda c, n: share(c, n, 32 * MiB, 300, [None, "cubic"]),
    "share-default-default": lambda c, n: share(c, n, 32 * MiB, 300, [None, None]),
    "share-one-node": lambda c, n: share(c, n, 32 * MiB, 300, 2),
    "share-cubic-cubic": lambda c, n: share(c, n, 32 * MiB, 300, ["cubic", "cubic"]),
    "far-64-25ms-1pct": lambda c, n: far(c, n, 64 * MiB, "25ms", "0.01"),
    "far-64-25ms-1pct-50mbit": lambda c, n: far(c, n, 64 * MiB, "25ms", "0.01", cap="50mbit"),
    "far-64-25ms-1pct-100mbit": lambda c, n: far(c, n, 64 * MiB, "25ms", "0.01", cap=SEED_CAP),
    "far-256-25ms-1pct": lambda c, n: far(c, n, 256 * MiB, "25ms", "0.01"),
    "far-256-25ms-1pct-50mbit": lambda c, n: far(c, n, 256 * MiB, "25ms", "0.01", cap="50mbit"),
    "far-64-75ms-0.5pct": lambda c, n: far(c, n, 64 * MiB, "75ms", "0.005"),
    "far-64-75ms-0.5pct-50mbit": lambda c, n: far(c, n, 64 * MiB, "75ms", "0.005",
                                                 cap="50mbit"),
    # The delays are each way: 50 ms each way is a 100 ms round trip.
    "far-64-50ms-1pct": lambda c, n: far(c, n, 64 * MiB, "50ms", "0.01"),
    "far-64-50ms-1pct-50mbit": lambda c, n: far(c, n, 64 * MiB, "50ms", "0.01", cap="50mbit"),
    "far-256-50ms-1pct": lambda c, n: far(c, n, 256 * MiB, "50ms", "0.01"),
    "far-256-50ms-1pct-50mbit": lambda c, n: far(c, n, 256 * MiB, "50ms", "0.01", cap="50mbit"),
    "far-64-150ms-0.5pct": lambda c, n: far(c, n, 64 * MiB, "150ms", "0.005"),
    "far-64-150ms-0.5pct-50mbit": lambda c, n: far(c, n, 64 * MiB, "150ms", "0.005",
                                                  cap="50mbit"),
    "far-64-5ms-2pct": lambda c, n: far(c, n, 64 * MiB, "5ms", "0.02"),
    "far-64-5ms-0.1pct": lambda c, n: far(c, n, 64 * MiB, "5ms", "0.001"),
    "relay-smoke": relay_smoke,
    "check-catches-tamper": check_catches_tamper,
    "relay-50ms": lambda c, n: relay_smoke(c, n, delay="50ms", size=16 * MiB, timeout=300),
    "restart": restart,
    "offer-addresses": offer_addresses,
    "public-addr": public_addr,
    "dead-and-live": dead_and_live,
    "ipv6-ula": ipv6_ula,
    "ipv6-loopback": ipv6_loopback,
}

SCENARIOS.update(internet.SCENARIOS)
SCENARIOS.update(library.SCENARIOS)
SCENARIOS.update(compare.SCENARIOS)
SCENARIOS.update(following.SCENARIOS)
SCENARIOS.update(relayed.SCENARIOS)
SCENARIOS.update(mirrors.SCENARIOS)
SCENARIOS.update(windows.SCENARIOS)
TOOLS = ("minimodel", "libtorrent")
# Scenarios that take a tool.
LIBTORRENT = internet.LIBTORRENT + mirrors.LIBTORRENT

SETS = {
    # What .ci/lab runs: a few minutes on two cores.
    "ci": ["check-catches-tamper", "swarm-4x48", "swarm-8x48", "seeders-4x256", "relay-smoke", "restart",
           "offer-addresses", "public-addr", "dead-and-live", "ipv6-ula", "ipv6-loopback",
           "nat-behaviour", "upnp-router", "uplinks-8x16-mixed", "uplinks-8x16-mixed:libtorrent",
           "homes-4x32-cone", "neighbours-2x32", "ticket-only", "home-seeder-upnp",
           "home-seeder-igd", "lan-only", "library-4x4", "homes-4x32-symmetric-upnp",
           "home-alone", "router-kinds", "homes-4x32-cone-open", "share-default-cubic",
           "far-64-25ms-1pct-50mbit", "relay-homes-cone", "relay-homes-symmetric",
           "relay-homes-companions-cone", "relay-homes-companions-symmetric",
           "relay-homes-seed-to-companion-symmetric", "relay-homes-companion-to-fetch-symmetric",
           "mirror-4x16", "mirror-cold-12x16-vs-libtorrent", "mirror-vs-seed-256-nginx",
           "follow-homes"],
    # The swarm figures of docs/performance.md; minutes each.
    "figures": ["swarm-4x48", "swarm-8x48", "swarm-4x256", "swarm-8x256", "seeders-4x256",
                "seeders-4x256-relay", "seeders-4x256-delay", "seeders-4x256-delay-bbr",
                "seeders-4x256-lossy", "seeders-4x256-lossy-bbr", "share-default-cubic",
                "share-default-default", "share-cubic-cubic", "share-one-node"],
    # Homes, NAT, a campus and a LAN (docs/lab.md, "The internet"); minutes
    # each, the 40-peer ones CPU-bound on two cores (see --rate-scale).
    "internet": ["uplinks-12x16-mixed", "uplinks-24x32-mixed", "uplinks-40x32-mixed",
                 "uplinks-24x128-mixed", "uplinks-40x128-mixed", "uplinks-24x32-10",
                 "uplinks-40x32-one24",
                 "homes-4x256-cone", "homes-4x256-symmetric", "neighbours-2x256", "lan-30x256",
                 "lan-30x256-mdns", "library-20x8", "relay-homes-cone-open", "relay-homes-ipv6",
                 "relay-homes-24x32-mixed", "mirror-cold-24x32", "mirror-cold-24x32-vs-libtorrent"],
    # minimodel against rqbit between two hosts of one LAN (needs rqbit:
    # benches/compare.sh installs it).
    "compare": ["compare-lan-256", "compare-lan-1g", "compare-lan-4g"],
    # One connection on a long lossy path against the same path without
    # loss (docs/performance.md, "One connection, far and lossy").
    "far": ["far-64-25ms-1pct", "far-64-25ms-1pct-50mbit", "far-256-25ms-1pct",
            "far-64-50ms-1pct", "far-64-50ms-1pct-50mbit", "far-256-50ms-1pct",
            "far-256-50ms-1pct-50mbit", "far-64-150ms-0.5pct", "far-64-150ms-0.5pct-50mbit"],
    # The Windows build under Wine as a peer (needs LAB_WINDOWS_EXE); CI
    # runs it in its Windows step, once the .exe is built.
    "windows": ["windows-peer"],
    # Behaviour checks too slow for CI (minutes on a lossy path).
    "slow": ["relay-50ms"],
}


def expand(names, default_tool):
    """(label, scenario, tool) for each NAME or NAME:TOOL; `both` runs a
    scenario that takes a tool once with each."""
    runs = []
    for entry in names:
        name, _, tool = entry.partition(":")
        tools = [tool] if tool else (list(TOOLS) if default_tool == "both" else [default_tool])
        if name in LIBTORRENT:
            runs += [(name if t == "minimodel" else f"{name}:{t}", name, t) for t in tools]
        elif tool or default_tool == "libtorrent":
            runs.append((entry, name, tools[0]))
        else:
            runs.append((name, name, "minimodel"))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*",
                        help="scenario names, NAME:libtorrent for libtorrent (see --list)")
    for name in SETS:
        parser.add_argument(f"--{name}", action="store_true", help=f"the {name} set")
    parser.add_argument("--all", action="store_true",
                        help="every scenario but the comparison with rqbit (--compare)")
    parser.add_argument("--list", action="store_true", help="list scenarios and sets")
    parser.add_argument("--repeat", type=int, default=1, help="run each scenario N times")
    parser.add_argument("--tool", choices=[*TOOLS, "both"], default="minimodel",
                        help="what the uplinks-* and mirror cold start scenarios run (default "
                        "minimodel; both: one after the other)")
    parser.add_argument("--rate-scale", type=float, default=1.0, metavar="S",
                        help="multiply every tbf cap by S (like 0.5), for a CPU that cannot "
                        "keep up with the scenario at full rate")
    parser.add_argument("--chunk-size", metavar="SIZE",
                        help="the fixtures' manifests use chunks of SIZE (like 1MiB) instead of "
                        "`minimodel manifest`'s default for their size; libtorrent's pieces follow")
    parser.add_argument("--peer-arg", action="append", metavar="ARG",
                        help="an extra argument for every peer's fetch in the swarm scenarios "
                        "of the internet (repeatable; write --peer-arg=--flag)")
    parser.add_argument("--seed-arg", action="append", metavar="ARG",
                        help="an extra argument for the seeder of the swarm scenarios (swarm-*, "
                        "uplinks-*, homes-*, neighbours-*, lan-*; repeatable; write "
                        "--seed-arg=--flag), like --seed-arg=--max-upload=3MB to check that a "
                        "slowed seeder fails the bounds")
    parser.add_argument("--libtorrent-peers", choices=["all", "seeder"], default="all",
                        help="what each libtorrent peer is given: every peer's address (as a "
                        "tracker would; default) or the seeder's only")
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
            tools = " (also :libtorrent)" if name in LIBTORRENT else ""
            held = "; ".join(f"{key} {op} {limit}" for key, op, limit in bounds.BOUNDS.get(name, []))
            why = bounds.UNBOUNDED.get(name)
            say(f"{name}{tools}" + (f": {held}" if held else "") + (f": not bounded: {why}" if why else ""))
        return 0
    names = list(args.scenarios)
    for set_name, members in SETS.items():
        if getattr(args, set_name):
            names += members
    if args.all:
        # The comparison with rqbit needs rqbit: run it by name or --compare.
        names = [name for name in SCENARIOS if name not in compare.SCENARIOS]
    if not names:
        parser.error("name scenarios or a set (--ci, --figures, --internet, --compare, --slow, "
                     "--all); "
                     "see --list")
    if not args.rate_scale > 0:
        parser.error("--rate-scale must be above 0")
    runs = expand(names, args.tool)
    unknown = [label for label, name, _ in runs if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; see --list")
    wrong = [label for label, name, tool in runs
             if tool not in TOOLS or (tool != "minimodel" and name not in LIBTORRENT)]
    if wrong:
        parser.error(f"{wrong}: only {', '.join(LIBTORRENT)} run with another tool than "
                     f"minimodel (tools: {', '.join(TOOLS)})")

    netlab.install_signal_handlers()
    made_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmlab-"))
    failures = []
    try:
        netlab.require_capabilities()
        netlab.clean_leftovers(log=say)
        ctx = Context(args, workdir)
        say(f"lab: binary {ctx.bin} ({ctx.build} build: every figure below is of it); "
            f"work directory {workdir}"
            + (f"; every cap times {args.rate_scale}" if args.rate_scale != 1 else "")
            + (f"; chunks of {args.chunk_size}" if args.chunk_size else ""))
        for label, name, tool in runs:
            for attempt in range(1, args.repeat + 1):
                shown = label if args.repeat == 1 else f"{label} (run {attempt}/{args.repeat})"
                say(f"== {shown}")
                started = time.monotonic()
                ctx.attempt = attempt
                log_name = label.replace(":", "-")
                reported = len(ctx.results)
                try:
                    if name in LIBTORRENT:
                        SCENARIOS[name](ctx, log_name, tool)
                    else:
                        SCENARIOS[name](ctx, log_name)
                    if tool == "minimodel":
                        # A scenario's own results; one that runs others
                        # reports theirs under their names.
                        own = [result for result in ctx.results[reported:]
                               if result.get("scenario", name) in (name, log_name)]
                        broken = [line for result in own for line in bounds.check(name, result)]
                        for result in own:
                            result["bounds_held"] = not broken
                        if broken:
                            raise Failed("a figure breaks its bound:\n" + indent("\n".join(broken)))
                    say(f"   PASS {shown} ({time.monotonic() - started:.1f} s)")
                except Failed as error:
                    failures.append((shown, str(error)))
                    say(f"   FAIL {shown} ({time.monotonic() - started:.1f} s):\n"
                        f"{indent(str(error))}")
                    say(f"   logs: {ctx.logdir(log_name)}")
        if args.results:
            with open(args.results, "a") as out:
                for result in ctx.results:
                    # Which build it measured (libtorrent's results too:
                    # the comparison was with that build).
                    result.setdefault("build", ctx.build)
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
        for label in dict.fromkeys(label for label, _, _ in runs):
            failed = sum(1 for shown, _ in failures if shown.startswith(f"{label} "))
            say(f"lab: {label}: {args.repeat - failed} of {args.repeat} runs passed")
    if failures:
        say(f"lab: {len(failures)} failed: {', '.join(shown for shown, _ in failures)}")
        return 1
    say("lab: every scenario passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
