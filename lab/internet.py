"""The lab's internet scenarios (docs/lab.md, "The internet"): hosts each on
a /24 of their own with home-sized uplinks, a campus behind one /24, homes
behind NAT routers (nftables masquerade, a real miniupnpd), a LAN, and
libtorrent beside minimodel on the same hosts, caps, file and piece size.

Every scenario here takes the run's Context and its name; the swarm ones
also a tool (`minimodel` or, where `LIBTORRENT` lists them, `libtorrent`).
"""

from __future__ import annotations

import json
import shutil
import time

from harness import (
    LT_CLIENT, LT_PYTHON, MODEL, MiB, PORT, SEED_CAP, CpuSampler, Failed, RateSampler, TxSeries,
    Watch, bits, check_download, fail_if, indent, json_events, measure_uplink, median, parse_offer,
    require_libtorrent, say, sha256_file, start_fetch, start_seeder, stop_all, wait_all,
)
from netlab import HOME_LAN4, PROBE, LabError, tool_path

# The seeder of the home-uplink scenarios.
UPLINK_SEED_CAP = "40mbit"
# Home uplinks, Mbit/s, given to the peers in turn.
MIXED = (2, 5, 10, 20)
# A home's uplink in the NAT scenarios.
HOME_UPLINK = "20mbit"
# Where the libtorrent clients listen.
LT_PORT = 6881


def peer_bytes_from(receipt, peer_id):
    """Bytes a receipt says peer `peer_id` delivered first."""
    return sum(p.get("bytes", 0) for p in receipt["source"]["peers"] if p.get("peer_id") == peer_id)


# --- running a swarm ------------------------------------------------------------


def swarm_minimodel(ctx, seeder, hosts, size, run_dir, timeout, meters, seed_after=True,
                    peer_extra=(), seed_extra=(), series=None):
    """`seed` on `seeder`, then every host's `fetch --serve` at once, each
    given only the seeder's offer (with `--seed-after` when `seed_after`:
    they serve on until the last one is done, and are stopped then). Reads
    each meter (a name -> callable giving bytes sent) at the start and when
    the last peer is done; with `series` (name -> host), each of those
    hosts' interface counter every quarter second too (`TxSeries`).
    Returns what happened (see `summarize`)."""
    _, _, sha = ctx.artifact(size)
    _, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT),
                            extra=[*seed_extra, *ctx.seed_args])
    seed_id, _ = parse_offer(offer)
    extra = (["--seed-after"] if seed_after else []) + list(peer_extra) + ctx.peer_args
    cpu = CpuSampler().start()
    sent0 = {name: meter() for name, meter in meters.items()}
    seeder_rate = RateSampler(meters["seeder"]).start() if "seeder" in meters else None
    t0 = time.monotonic()
    tx = TxSeries(series, t0).start() if series else None
    fetches = []
    for host in hosts:
        out = run_dir / host.name
        fetches.append((start_fetch(ctx, host, size, ["--offer", offer], out,
                                    serve=host.addr(PORT), extra=extra), out))
    procs = [p for p, _ in fetches]
    watch = Watch(procs, "delivered", t0, exit_is_done=True)
    late = watch.wait(timeout)
    sent1 = {name: meter() for name, meter in meters.items()}
    if tx:
        tx.stop()
    seeder_peaks = {}
    if seeder_rate:
        seeder_rate.stop()
        seeder_peaks = {w: seeder_rate.peak(w) for w in (1.0, 2.0, 3.0)}
    load = cpu.stop()
    load["peers_cpu_s"] = round(sum(watch.cpu.values()), 1)
    stop_all(procs)
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    receipts = [check_download(p, out, sha, problems) for p, out in fetches]
    mapped = sum(1 for p in procs
                 if any(e.get("step") == "mapped" for e in json_events(p, "port-mapping")))
    return {
        "tool": "minimodel",
        "peers_with_a_mapping": mapped,
        "done_at": [watch.done_at.get(p) for p in procs],
        "first_byte_at": [watch.first_byte_at.get(p) for p in procs],
        "last_bytes": [watch.last_bytes.get(p, 0) for p in procs],
        "timeline": watch.crowd_timeline(size),
        "from_seeder": [peer_bytes_from(r, seed_id) if r else None for r in receipts],
        "from_others": [sum(p.get("bytes", 0) for p in r["source"]["peers"]) -
                        peer_bytes_from(r, seed_id) if r else None for r in receipts],
        "wasted": [r["source"].get("bytes_wasted", 0) if r else None for r in receipts],
        "sent": {name: sent1[name] - sent0[name] for name in meters},
        "seeder_peaks": seeder_peaks,
        "tx": tx,
        "cpu": load,
        "problems": problems,
    }


def swarm_libtorrent(ctx, seeder, hosts, size, run_dir, timeout, meters, series=None):
    """The same swarm with the libtorrent client (lab/ltclient.py): the
    seeder seeds the fixture from a .torrent whose pieces are the manifest's
    chunks, every host downloads and seeds on; each is given the seeder's
    address and, with `--libtorrent-peers all` (the default), every other
    peer's (what a tracker would tell it). The clock starts once every client listens (the
    go file appears). Asserted: every client finished, exits 0 when stopped,
    saw no piece fail its hash check, and its file's SHA-256 is the
    fixture's."""
    require_libtorrent()
    slm, _, sha = ctx.artifact(size)
    torrent = ctx.torrent(size)
    seed = seeder.popen([LT_PYTHON, LT_CLIENT, "seed", torrent, slm.parent,
                         "--listen", seeder.addr(LT_PORT)], "lt-seed")
    wait_for_event(seed, "ready", 120)
    go = run_dir / "go"
    addrs = [h.addr(LT_PORT) for h in hosts]
    procs = []
    for host in hosts:
        given = [seeder.addr(LT_PORT)]
        if ctx.libtorrent_peers == "all":
            given += [a for a in addrs if a != host.addr(LT_PORT)]
        argv = [LT_PYTHON, LT_CLIENT, "get", torrent, run_dir / host.name,
                "--listen", host.addr(LT_PORT), "--go", go]
        for addr in given:
            argv += ["--peer", addr]
        procs.append(host.popen(argv, "lt-get"))
    for proc in procs:
        wait_for_event(proc, "listening", 120)
    cpu = CpuSampler().start()
    sent0 = {name: meter() for name, meter in meters.items()}
    t0 = time.monotonic()
    tx = TxSeries(series, t0).start() if series else None
    go.touch()
    watch = Watch(procs, "finished", t0)
    late = watch.wait(timeout)
    sent1 = {name: meter() for name, meter in meters.items()}
    if tx:
        tx.stop()
    load = cpu.stop()
    load["peers_cpu_s"] = round(sum(watch.cpu.values()), 1)
    stop_all(procs)
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    from_seeder, from_others = [], []
    for proc, host in zip(procs, hosts):
        if proc.returncode != 0:
            problems.append(f"{proc.name} exited {proc.returncode}:\n{indent(proc.tail())}")
        stopped = json_events(proc, "stopped")
        if not stopped:
            problems.append(f"{proc.name} reported nothing when stopped:\n{indent(proc.tail())}")
            from_seeder.append(None)
            from_others.append(None)
            continue
        peers = stopped[-1]["peers"]
        if stopped[-1].get("hash_failures"):
            problems.append(f"{proc.name}: {stopped[-1]['hash_failures']} pieces failed their "
                            "hash check")
        mine = peers.get(seeder.ip4, {}).get("down", 0)
        from_seeder.append(mine)
        from_others.append(sum(v.get("down", 0) for v in peers.values()) - mine)
        if proc in watch.done_at:
            path = run_dir / host.name / slm.name
            digest = sha256_file(path) if path.exists() else None
            if digest != sha:
                problems.append(f"{proc.name}: {path} has SHA-256 {digest}, not {sha}")
    return {
        "tool": "libtorrent",
        "done_at": [watch.done_at.get(p) for p in procs],
        "first_byte_at": [watch.first_byte_at.get(p) for p in procs],
        "last_bytes": [watch.last_bytes.get(p, 0) for p in procs],
        "timeline": watch.crowd_timeline(size),
        "from_seeder": from_seeder,
        "from_others": from_others,
        "wasted": None,
        "sent": {name: sent1[name] - sent0[name] for name in meters},
        "tx": tx,
        "cpu": load,
        "problems": problems,
    }


def wait_for_event(proc, kind, timeout):
    deadline = time.monotonic() + timeout
    while not json_events(proc, kind):
        if proc.poll() is not None:
            raise Failed(f"{proc.name} exited {proc.returncode} before '{kind}':\n"
                         f"{indent(proc.tail())}")
        if time.monotonic() > deadline:
            raise Failed(f"{proc.name} did not report '{kind}' in {timeout} s:\n"
                         f"{indent(proc.tail())}")
        time.sleep(0.05)


def run_swarm(ctx, tool, *args, **kwargs):
    if tool == "libtorrent":
        kwargs.pop("seed_after", None)
        kwargs.pop("peer_extra", None)
        return swarm_libtorrent(ctx, *args, **kwargs)
    return swarm_minimodel(ctx, *args, **kwargs)


def summarize(run, size, bound, u_s):
    """The figures every swarm scenario reports from a run: the last and the
    median peer's time and each over `bound`, the seeder's copies (its
    meter `seeder`), each peer's share of the file from the seeder, peers
    that never got a byte, and the CPU's idle share."""
    peers = len(run["done_at"])
    done = [t for t in run["done_at"] if t is not None]
    complete = len(done) == peers
    last = max(done) if complete else None
    mid = median(done) if complete else None
    shares = [round(b / size, 3) if b is not None else None for b in run["from_seeder"]]
    never = sum(1 for t, b in zip(run["done_at"], run["last_bytes"]) if t is None and not b)
    return {
        "tool": run["tool"],
        "peers": peers,
        "bytes": size,
        "seeder_uplink_MBps": round(u_s / 1e6, 3),
        "bound_s": round(bound, 2),
        "last_peer_s": round(last, 2) if last else None,
        "median_peer_s": round(mid, 2) if mid else None,
        "time_over_bound": round(last / bound, 3) if last else None,
        "median_over_bound": round(mid / bound, 3) if mid else None,
        "completed_peer_s": [round(t, 2) for t in sorted(done)],
        "first_byte_s": [round(t, 2) if t is not None else None for t in run["first_byte_at"]],
        "seeder_copies": round(run["sent"]["seeder"] / size, 3),
        "seeder_share_per_peer": shares,
        "peers_nothing_from_seeder": sum(1 for b in run["from_seeder"] if b == 0),
        "peers_never_got_a_byte": never,
        "bytes_wasted_per_peer": run["wasted"],
        "cpu": run["cpu"],
        "ok": not run["problems"],
    }


def report(ctx, name, result, extra_lines=()):
    result["scenario"] = name
    result["run"] = ctx.attempt
    result["rate_scale"] = ctx.rate_scale
    ctx.results.append(result)
    say(f"  [{result['tool']}] seeder uplink (TCP through its cap): "
        f"{result['seeder_uplink_MBps']:.2f} MB/s ({bits(result['seeder_uplink_MBps'] * 1e6):.1f} "
        f"Mbit/s); bound T* {result['bound_s']:.2f} s")
    if result["last_peer_s"]:
        say(f"  last peer done at {result['last_peer_s']:.2f} s = {result['time_over_bound']:.3f} "
            f"T*; median {result['median_peer_s']:.2f} s = {result['median_over_bound']:.3f} T*")
    else:
        done = len(result["completed_peer_s"])
        say(f"  {result['peers'] - done} of {result['peers']} peers were not done; "
            f"{result['peers_never_got_a_byte']} never got a byte")
    shares = [s for s in result["seeder_share_per_peer"] if s is not None]
    if shares:
        say(f"  seeder sent {result['seeder_copies']:.3f} copies; share of the file from the "
            f"seeder per peer: min {min(shares):.3f}, median {median(shares):.3f}, "
            f"max {max(shares):.3f}; {result['peers_nothing_from_seeder']} peers got nothing "
            "from it")
    firsts = [t for t in result["first_byte_s"] if t is not None]
    if firsts:
        say(f"  first verified byte: median {median(firsts):.2f} s, last {max(firsts):.2f} s "
            f"({len(firsts)} of {result['peers']} peers)")
    for line in extra_lines:
        say(f"  {line}")
    cpu = result["cpu"]
    say(f"  CPU (/proc/stat): idle {cpu['idle_pct']:.1f}% over the run (niced work "
        f"{cpu['nice_pct']:.1f}%, user {cpu['user_pct']:.1f}%, kernel {cpu['kernel_pct']:.1f}%), "
        f"least idle second {cpu['idle_min_1s_pct']}%, {cpu['seconds_below_5pct']} of "
        f"{cpu['seconds']} s below 5% idle; the peers' processes took {cpu['peers_cpu_s']} "
        "CPU seconds")


# --- home uplinks ----------------------------------------------------------------


def uplinks(ctx, name, tool, peers, size, caps, campus=False, timeout=900, peer_extra=()):
    """One seeder capped at 40 Mbit on a /24 of its own, `peers` peers with
    uplinks `caps` (Mbit/s, given in turn), downloads uncapped, each on a
    /24 of its own (or all on one campus /24 with `campus`); every peer is
    given only the seeder's offer and serves on after it is done (minimodel
    `fetch --serve --seed-after`; libtorrent seeds on) until the last one
    is done. Asserted: every peer is done and exits 0 when stopped, with a
    receipt (libtorrent: a file) of the fixture's SHA-256 that blames
    nobody. Reported: the last and the median peer's time over T* =
    max(F/u_s, N*F/(u_s + sum u_i)) (u_s measured, each u_i its cap times
    the payload share TCP gets through the seeder's cap), the seeder's
    copies, each peer's share of the file from the seeder, how much of
    each uplink carried bytes until the last peer was done (its interface's
    count over its cap; T* needs all of them full), and the CPU's idle
    share."""
    caps_mbit = [caps[i % len(caps)] for i in range(peers)]
    run_dir = ctx.scratch(name)
    ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_internet_host("s", cap=UPLINK_SEED_CAP)
        if campus:
            site = lab.add_campus("campus")
            hosts = [site.add_host(f"p{i}", cap=f"{c}mbit") for i, c in enumerate(caps_mbit, 1)]
        else:
            hosts = [lab.add_internet_host(f"p{i}", cap=f"{c}mbit")
                     for i, c in enumerate(caps_mbit, 1)]
        lab.wait_reachable()
        u_s = measure_uplink(seeder, hosts[0])
        meters = {"seeder": seeder.tx_bytes}
        meters.update({h.name: h.tx_bytes for h in hosts})
        run = run_swarm(ctx, tool, seeder, hosts, size, run_dir, timeout,
                        meters, peer_extra=peer_extra, series={h.name: h for h in hosts})
    payload_share = u_s / (seeder.cap_bits / 8)
    uplinks_sum = sum(payload_share * h.cap_bits / 8 for h in hosts)
    bound = max(size / u_s, peers * size / (u_s + uplinks_sum))
    nominal = max(size / (seeder.cap_bits / 8),
                  peers * size / ((seeder.cap_bits + sum(h.cap_bits for h in hosts)) / 8))
    result = summarize(run, size, bound, u_s)
    by_cap = {}
    for cap, t in zip(caps_mbit, run["done_at"]):
        by_cap.setdefault(cap, []).append(t)
    # How much of each uplink carried anything (payload and overhead, as the
    # interface counts it) until the last peer was done.
    last = max((t for t in run["done_at"] if t is not None), default=None)
    used_by_cap = {}
    if last:
        for cap, h in zip(caps_mbit, hosts):
            used_by_cap.setdefault(cap, []).append(run["sent"][h.name] / (h.cap_bits / 8 * last))
        seeder_used = run["sent"]["seeder"] / (seeder.cap_bits / 8 * last)
    else:
        seeder_used = None
    # The same, before each peer was done and after (it serves on until
    # the last one is done): where a fast uplink idles, whether it idled
    # while its own download ran (nobody asked it for what it had) or as a
    # seed (the others had what it could give, or asked it too little).
    # Only a peer done at least a second before the last counts after.
    before_by_cap, after_by_cap = {}, {}
    tx = run.get("tx")
    if last and tx:
        for cap, h, done in zip(caps_mbit, hosts, run["done_at"]):
            if done is None:
                continue
            rate = h.cap_bits / 8
            sent = tx.sent(h.name, 0.0, done)
            if sent is not None and done > 0:
                before_by_cap.setdefault(cap, []).append(sent / (rate * done))
            sent = tx.sent(h.name, done, last)
            if sent is not None and last - done >= 1.0:
                after_by_cap.setdefault(cap, []).append(sent / (rate * (last - done)))
    # The seeder's best second over its cap: near 1 when it can fill
    # its link; a --max-upload of half the cap leaves it about 0.72 (the
    # half and the upload bucket's burst of 1 MiB). Over 2 and 3 s as
    # well (seeder_peaks_of_cap): this crowd's seeder does not keep its
    # link full for long (docs/performance.md, "Bounds the lab holds").
    peaks_of_cap = {f"{w:g}s": round(r / (seeder.cap_bits / 8), 3)
                    for w, r in run.get("seeder_peaks", {}).items() if r}
    result.update({
        "seeder_peak_of_cap": peaks_of_cap.get("1s"),
        "topology": "campus /24" if campus else "a /24 per host",
        "seeder_cap": seeder.cap,
        "peer_caps_mbit": sorted(set(caps_mbit)),
        "payload_share_of_cap": round(payload_share, 3),
        "nominal_bound_s": round(nominal, 2),
        "median_peer_s_by_cap": {str(c): round(median(v), 2) if None not in v else None
                                 for c, v in sorted(by_cap.items())},
        "uplink_used_by_cap": {str(c): round(median(v), 3) for c, v in sorted(used_by_cap.items())},
        "uplink_used_before_done_by_cap": {str(c): round(median(v), 3)
                                           for c, v in sorted(before_by_cap.items())},
        "uplink_used_after_done_by_cap": {str(c): round(median(v), 3)
                                          for c, v in sorted(after_by_cap.items())},
        "seeder_uplink_used": round(seeder_used, 3) if seeder_used is not None else None,
        "seeder_peaks_of_cap": peaks_of_cap,
        "copies_verified_every_2s": [round(c, 2) for _, c in run.get("timeline", [])],
    })
    lines = ["median done by uplink (Mbit/s): "
             + ", ".join(f"{c}: {v}" for c, v in result["median_peer_s_by_cap"].items()),
             "uplinks used until the last peer was done (median by cap, Mbit/s): "
             + ", ".join(f"{c}: {v}" for c, v in result["uplink_used_by_cap"].items())
             + f"; seeder {result['seeder_uplink_used']}"
             + (f" (its best second {result['seeder_peak_of_cap']} of its cap)"
                if result["seeder_peak_of_cap"] is not None else "")]
    if result["uplink_used_before_done_by_cap"]:
        lines.append("  before each peer was done: "
                     + ", ".join(f"{c}: {v}" for c, v
                                 in result["uplink_used_before_done_by_cap"].items())
                     + "; after, serving until the last was done (peers done 1 s or more "
                     "before it): "
                     + (", ".join(f"{c}: {v}" for c, v
                                  in result["uplink_used_after_done_by_cap"].items()) or "none"))
    if result["copies_verified_every_2s"]:
        # Beside the simulator's "verified over time" (NETSIM_TRACE=1):
        # the ramp, the middle at the swarm's rate, and the tail.
        lines.append("copies verified over the crowd by every 2 s mark: "
                     + " ".join(f"{c:g}" for c in result["copies_verified_every_2s"]))
    report(ctx, name, result, lines)
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(run["problems"])


# --- homes behind NAT ------------------------------------------------------------


def homes(ctx, name, size, nat, count=4, per_home=1, timeout=900, peer_extra=(), upnp=False,
          firewall=True):
    """A seeder capped at 100 Mbit on the internet; `count` homes, each
    behind its own router (`nat`: cone or symmetric), its uplink 20 Mbit,
    with `per_home` `fetch --serve` peers on its LAN (1 Gbit), each given
    only the seeder's offer. Asserted as in `uplinks`. Reported: the last
    peer's time over the time the seeder needs for one copy (F/u_s) and over
    T*, the seeder's copies, the bytes that reached peers from other peers
    (per receipt, delivered-first bytes not from the seeder: between homes,
    or inside a home's LAN), and what each home sent (its router's WAN).
    Fails when, behind cone NATs, no byte moved between peers, or when the
    seeder sent one home whose peers share a LAN more than 1.5 copies.
    With `upnp`, each router runs miniupnpd (UPnP IGD, NAT-PMP, PCP) and
    fails unless every peer reports a port mapping (a `port-mapping`
    event `mapped`); homes behind symmetric NATs then trade too (a
    mapping is dialed cold)."""
    run_dir = ctx.scratch(name)
    ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_internet_host("s", cap=SEED_CAP)
        houses = [lab.add_home(f"h{i}", nat=nat, cap=HOME_UPLINK, firewall=firewall)
                  for i in range(1, count + 1)]
        hosts = [house.add_host(f"h{i}{chr(96 + j)}")
                 for i, house in enumerate(houses, 1) for j in range(1, per_home + 1)]
        stun = lab.add_stun_server() if upnp else None
        lab.wait_reachable()
        if upnp:
            for house in houses:
                house.start_upnp(stun)
        # Into the first home's router: nothing gets into a home unasked.
        u_s = measure_uplink(seeder, houses[0].router)
        meters = {"seeder": seeder.tx_bytes}
        meters.update({house.name: house.tx_bytes for house in houses})
        run = swarm_minimodel(ctx, seeder, hosts, size, run_dir, timeout, meters,
                              seed_after=False, peer_extra=peer_extra)
        home_cap_bits = houses[0].router.cap_bits
        seeder_cap_bits = seeder.cap_bits
    one_copy = size / u_s
    payload_share = u_s / (seeder_cap_bits / 8)
    peers = len(hosts)
    bound = max(one_copy, peers * size / (u_s + count * payload_share * home_cap_bits / 8))
    result = summarize(run, size, bound, u_s)
    last = result["last_peer_s"]
    others = [b for b in run["from_others"] if b is not None]
    result.update({
        "topology": f"{count} homes behind {nat} NAT"
                    f"{'' if firewall else ' without an input firewall'}, {per_home} peer(s) each",
        "home_uplink": houses[0].router.cap,
        "one_copy_s": round(one_copy, 2),
        "time_over_one_copy": round(last / one_copy, 3) if last else None,
        "bytes_from_other_peers": sum(others),
        "bytes_from_other_peers_per_peer": run["from_others"],
        "copies_from_other_peers": round(sum(others) / size, 3),
        "home_sent_copies": {n: round(run["sent"][n] / size, 3) for n in meters if n != "seeder"},
    })
    if upnp:
        result["peers_with_a_mapping"] = run["peers_with_a_mapping"]
    lines = []
    if last:
        lines.append(f"last peer at {last:.2f} s = {result['time_over_one_copy']:.3f} times the "
                     f"seeder's one copy ({one_copy:.2f} s)")
    if upnp:
        lines.append(f"{run['peers_with_a_mapping']} of {peers} peers reported a port mapping")
    lines.append(f"bytes from other peers (receipts): {sum(others)} = "
                 f"{result['copies_from_other_peers']:.3f} copies; homes sent (WAN) "
                 f"{result['home_sent_copies']} copies")
    report(ctx, name, result, lines)
    shutil.rmtree(run_dir, ignore_errors=True)
    problems = list(run["problems"])
    # Behind cone NATs the peers get through to each other (introductions
    # through the seeder); inside one home they trade over the LAN.
    if (nat == "cone" or upnp) and len(hosts) > 1 and sum(others) == 0:
        problems.append("no byte moved between peers: every copy came from the seeder")
    if upnp and run["peers_with_a_mapping"] < peers:
        problems.append(f"{peers - run['peers_with_a_mapping']} of {peers} peers reported no "
                        "port mapping from their home's router (miniupnpd)")
    if per_home > 1 and count == 1 and run["sent"]["seeder"] > 1.5 * size:
        problems.append(f"the seeder sent {run['sent']['seeder'] / size:.2f} copies to one home "
                        f"whose peers share a LAN")
    fail_if(problems)


def lan(ctx, name, peers, size, timeout=1200, peer_extra=(), seed_extra=()):
    """`peers` `fetch --serve` peers and one seeder on one LAN bridge (a
    home's LAN, 192.168.1.0/24), the peers' uplinks at 1 Gbit, the
    seeder's capped at 100 Mbit; every peer is given the seeder's offer
    (and `peer_extra`, plus `--peer-arg`s; the seeder `seed_extra`).
    Asserted as in `uplinks`.
    Reported: the seeder's copies, the last peer's time over F/u_s, and
    the CPU's idle share."""
    run_dir = ctx.scratch(name)
    ctx.artifact(size)
    with ctx.lab(name) as lab:
        house = lab.add_home("lan", nat="cone")
        seeder = house.add_host("s", cap=SEED_CAP)
        hosts = [house.add_host(f"p{i}") for i in range(1, peers + 1)]
        lab.wait_reachable()
        u_s = measure_uplink(seeder, hosts[0])
        run = swarm_minimodel(ctx, seeder, hosts, size, run_dir, timeout,
                              {"seeder": seeder.tx_bytes}, seed_after=False,
                              peer_extra=peer_extra, seed_extra=seed_extra)
        peer_bits = hosts[0].cap_bits
        seeder_bits = seeder.cap_bits
    one_copy = size / u_s
    share = u_s / (seeder_bits / 8)
    bound = max(one_copy, peers * size / (u_s + peers * share * peer_bits / 8))
    result = summarize(run, size, bound, u_s)
    last = result["last_peer_s"]
    result.update({
        "topology": f"one LAN, {peers} peers and the seeder",
        "one_copy_s": round(one_copy, 2),
        "time_over_one_copy": round(last / one_copy, 3) if last else None,
    })
    report(ctx, name, result, [f"one copy at the seeder's cap: {one_copy:.2f} s"])
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(run["problems"])


# --- checks of the lab itself ----------------------------------------------------


def nat_behaviour(ctx, name):
    """The routers behave as their NAT says. From one UDP socket on a LAN
    host, a datagram to an echo on each of two internet hosts: behind
    `masquerade` (cone) both echoes see the router's WAN address and one
    outside port, behind `masquerade random` (symmetric) two ports (drawn
    at random: one chance draw of the same port is tried again from a fresh
    socket). Then,
    aimed at the outside port the first echo saw: three datagrams from a
    third internet host, and three from the first echo's host but another
    port, must not reach the LAN socket, while the two echoes' second
    answers 3 s later (from the addresses it sent to) must."""
    problems = []
    observed = {}
    with ctx.lab(name) as lab:
        a = lab.add_internet_host("a")
        b = lab.add_internet_host("b")
        c = lab.add_internet_host("c")
        houses = {nat: lab.add_home(f"{nat[:3]}", nat=nat) for nat in ("cone", "symmetric")}
        inside = {nat: house.add_host(f"{nat[:3]}1") for nat, house in houses.items()}
        lab.wait_reachable()
        for host in (a, b):
            echo = host.popen(["python3", PROBE, "echo", host.ip4, 7000], "echo")
            wait_ready(echo)
        targets = [f"{a.ip4}:7000", f"{b.ip4}:7000"]
        def start_probe(nat):
            probe = inside[nat].popen(["python3", PROBE, "probe", *targets, "--listen", "5",
                                       "--again-after", "3"], "probe")
            deadline = time.monotonic() + 5
            while not probe.stdout_text().strip():
                if probe.poll() is not None or time.monotonic() > deadline:
                    raise Failed(f"the probe behind {nat} NAT printed nothing:\n"
                                 f"{indent(probe.tail())}")
                time.sleep(0.02)
            return probe, json.loads(probe.stdout_text().splitlines()[0])

        def one_port(first):
            seen = first["seen"]
            return None not in seen.values() and len({v for v in seen.values()}) == 1

        for nat, house in houses.items():
            probe, first = start_probe(nat)
            if nat == "symmetric" and one_port(first):
                # A symmetric router draws each destination's outside port
                # at random from 64,512; the same draw twice happens about
                # once in 64,512 probes (it did in one run). A fresh socket
                # tries again: the same port twice in a row means the
                # router keeps one mapping per socket.
                say(f"  symmetric: one outside port for both destinations "
                    f"({first['seen']}); a fresh socket tries again")
                probe.stop()
                probe, first = start_probe(nat)
            seen = first["seen"]
            if None in seen.values():
                problems.append(f"{nat}: an echo did not answer: {seen}")
                probe.stop()
                continue
            ports = {t: int(v.rsplit(":", 1)[1]) for t, v in seen.items()}
            addrs = {v.rsplit(":", 1)[0] for v in seen.values()}
            observed[nat] = {"local_port": first["local"], "seen": seen}
            if addrs != {house.wan_ip}:
                problems.append(f"{nat}: the echoes saw {addrs}, not the router's {house.wan_ip}")
            distinct = len(set(ports.values()))
            if nat == "cone" and distinct != 1:
                problems.append(f"cone (masquerade): one socket got {distinct} outside ports for "
                                f"two destinations: {seen}")
            if nat == "symmetric" and distinct != 2:
                problems.append(f"symmetric (masquerade random): one socket kept one outside port "
                                f"for two destinations: {seen}")
            outside = f"{house.wan_ip}:{ports[targets[0]]}"
            c.run(["python3", PROBE, "send", outside])
            a.run(["python3", PROBE, "send", outside, "--port", "7001"])
            probe.wait(10)
            got = [json.loads(line) for line in probe.stdout_text().splitlines()[1:]
                   if line.startswith("{")]
            sources = [g["from"] for g in got]
            observed[nat]["later"] = sources
            for stranger in (f"{c.ip4}:", f"{a.ip4}:7001"):
                if any(s.startswith(stranger) for s in sources):
                    problems.append(f"{nat}: an unsolicited datagram from {stranger.rstrip(':')} "
                                    f"got in: {sources}")
            for target in targets:
                if target not in sources:
                    problems.append(f"{nat}: the second answer from {target} did not get back in "
                                    f"(the mapping should still be open): {sources}")
    for nat, seen in observed.items():
        say(f"  {nat}: LAN socket port {seen['local_port']} seen as {seen['seen']}; "
            f"then received from {seen.get('later')}")
    ctx.results.append({"scenario": name, "observed": observed, "ok": not problems})
    fail_if(problems)


def router_kinds(ctx, name):
    """The routers the punching scenarios use behave as said (docs/lab.md,
    "Home routers"). Internet hosts a (a UDP echo at 7000) and c.
    - A cone router with and without an input firewall: c first sends
      three datagrams from its port 7000 to the router's WAN address at
      port 40000; then a LAN host sends from its port 40000 to c:7000 (an
      echo now). With the firewall the echo sees port 40000 (the early
      datagrams were rejected and left no state); without it, another port
      (the router kept them as its own, and masquerade moved the host's
      mapping), which is what defeats a punch unless the host opens its
      router first.
    - A home behind a carrier's NAT: the echo sees the carrier's address;
      a datagram from c to that outside port does not get in.
    - An IPv6 home behind a stateful firewall: the echo sees the host's
      own global address (no NAT); a datagram from c does not get in
      before the host has sent to c, and does after."""
    problems = []
    observed = {}
    with ctx.lab(name) as lab:
        lab.enable_internet6()
        a = lab.add_internet_host("a")
        c = lab.add_internet_host("c")
        walled = lab.add_home("fw", nat="cone")
        open_home = lab.add_home("op", nat="cone", firewall=False)
        carrier = lab.add_carrier("cg")
        behind = lab.add_home("cgh", nat="cone", carrier=carrier)
        six = lab.add_home("v6", nat="cone", v6=True)
        hosts = {house.name: house.add_host(f"{house.name}1")
                 for house in (walled, open_home, behind, six)}
        lab.wait_reachable()

        def echo_at(host, addr, port):
            proc = host.popen(["python3", PROBE, "echo", addr, port], f"echo{port}")
            wait_ready(proc)
            return proc

        def probe(host, target, family=4, port=40000, listen=1.0):
            done = host.run(["python3", PROBE, "probe", target, "--port", port, "--listen",
                             listen, "--family", family], check=False, timeout=30)
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            if not lines:
                raise Failed(f"the probe in {host.name} printed nothing:\n{done.stderr}")
            return lines[0]["seen"][target], [line["from"] for line in lines[1:]]

        # Cone routers: an unasked datagram first, then the host's own.
        for house, expect_kept in ((walled, True), (open_home, False)):
            c.run(["python3", PROBE, "send", f"{house.wan_ip}:40000", "--port", 7000])
            echo = echo_at(c, c.ip4, 7000)
            seen, _ = probe(hosts[house.name], f"{c.ip4}:7000")
            echo.stop()
            port = int(seen.rsplit(":", 1)[1]) if seen else None
            observed[house.name] = seen
            if seen is None:
                problems.append(f"{house!r}: the echo did not answer")
            elif (port == 40000) != expect_kept:
                problems.append(f"{house!r}: after an unasked datagram the host's port 40000 "
                                f"was seen as {seen}, expected "
                                f"{'40000' if expect_kept else 'another port'}")
        # Behind a carrier's NAT: seen at the carrier; nothing gets in
        # unasked, the echo's second answer does.
        echo = echo_at(a, a.ip4, 7000)
        listener = hosts[behind.name].popen(
            ["python3", PROBE, "probe", f"{a.ip4}:7000", "--port", 40000, "--listen", 3,
             "--again-after", 1], "probe-carrier")
        time.sleep(0.5)
        c.run(["python3", PROBE, "send", f"{carrier.router.ip4}:40000", "--port", 7009])
        listener.wait(10)
        lines = [json.loads(line) for line in listener.stdout_text().splitlines()
                 if line.startswith("{")]
        seen = lines[0]["seen"].get(f"{a.ip4}:7000") if lines else None
        later = [line["from"] for line in lines[1:]]
        observed[behind.name] = {"seen": seen, "later": later}
        if not seen or not seen.startswith(f"{carrier.router.ip4}:"):
            problems.append(f"{behind!r}: seen as {seen}, not at the carrier's {carrier.router.ip4}")
        if f"{c.ip4}:7009" in later:
            problems.append(f"{behind!r}: an unasked datagram got in through the carrier: {later}")
        if f"{a.ip4}:7000" not in later:
            problems.append(f"{behind!r}: the echo's second answer did not get back in: {later}")
        # IPv6: no translation, stateful filtering.
        v6_host = hosts[six.name]
        echo6 = echo_at(a, a.ip6, 7006)
        c.run(["python3", PROBE, "send", f"[{v6_host.ip6}]:40006", "--port", 7006, "--family",
               6], check=False)
        listener = v6_host.popen(["python3", PROBE, "probe", f"[{a.ip6}]:7006", "--port", 40006,
                                  "--listen", 3, "--family", 6, "--again-after", 1], "probe6")
        time.sleep(0.5)
        c.run(["python3", PROBE, "send", f"[{v6_host.ip6}]:40006", "--port", 7006, "--family",
               6])
        listener.wait(10)
        lines = [json.loads(line) for line in listener.stdout_text().splitlines()
                 if line.startswith("{")]
        seen6 = lines[0]["seen"].get(f"[{a.ip6}]:7006") if lines else None
        later = [line["from"] for line in lines[1:]]
        observed[six.name] = {"seen": seen6, "later": later}
        if seen6 != f"[{v6_host.ip6}]:40006":
            problems.append(f"{six!r}: the echo saw {seen6}, not the host's own "
                            f"[{v6_host.ip6}]:40006")
        if f"[{a.ip6}]:7006" not in later:
            problems.append(f"{six!r}: the echo's second answer did not get back in: {later}")
        echo.stop()
        echo6.stop()
    for what, seen in observed.items():
        say(f"  {what}: {seen}")
    ctx.results.append({"scenario": name, "observed": observed, "ok": not problems})
    fail_if(problems)


def wait_ready(proc, timeout=10):
    deadline = time.monotonic() + timeout
    while "ready" not in proc.stdout_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"{proc.name} did not start:\n{indent(proc.tail())}")
        time.sleep(0.02)


def upnp_router(ctx, name):
    """The miniupnpd home router maps ports. With coturn as the STUN server
    on the internet, miniupnpd's STUN check finds no NAT above its (private)
    WAN address and serves. From a LAN host: `natpmpc` maps TCP 40001,
    `upnpc` (UPnP IGD) maps UDP 40002; for each, the `dnat` rule is in the
    router's `prerouting_miniupnpd` chain (read with `Home.mappings`), an
    internet host reaches the LAN host's server through the router's WAN
    address (and is seen there under its own address), and deleting the
    mapping removes the rule and the way in; before the mapping, the way in
    is closed."""
    natpmpc, upnpc = tool_path("natpmpc"), tool_path("upnpc")
    for tool, path, package in (("natpmpc", natpmpc, "natpmpc"), ("upnpc", upnpc, "miniupnpc")):
        if path is None:
            raise LabError(f"`{tool}` (Debian's {package}) is not installed; {name} needs it")
    problems = []
    steps = []
    with ctx.lab(name) as lab:
        stun = lab.add_stun_server()
        outside = lab.add_internet_host("x")
        house = lab.add_home("h", nat="cone")
        inside = house.add_host("l")
        lab.wait_reachable()
        house.start_upnp(stun)
        wan = house.wan_ip
        gateway = HOME_LAN4.format(1)

        def mapped(protocol, port):
            return [m for m in house.mappings()
                    if m["protocol"] == protocol and m["external_port"] == port]

        def tcp_reach():
            return outside.run(["python3", PROBE, "tcp-call", wan, 40001], check=False)

        def udp_reach():
            return outside.run(["python3", PROBE, "probe", f"{wan}:40002", "--listen", "1"],
                               check=False)

        server = inside.popen(["python3", PROBE, "tcp-serve", inside.ip4, 40001], "tcp-serve")
        wait_ready(server)
        if tcp_reach().returncode == 0:
            problems.append(f"{wan}:40001 reached the LAN host before any mapping")
        done = inside.run([natpmpc, "-g", gateway, "-a", "40001", "40001", "tcp", "600"],
                          check=False)
        steps.append("natpmpc -a 40001 40001 tcp 600: " + last_line(done, "Mapped"))
        if done.returncode != 0 or "Mapped public port 40001 protocol TCP" not in done.stdout:
            problems.append(f"natpmpc did not map TCP 40001:\n{indent(done.stdout + done.stderr)}")
        rules = mapped("tcp", 40001)
        want = {"internal_addr": inside.ip4, "internal_port": 40001}
        if not any(all(r[k] == v for k, v in want.items()) for r in rules):
            problems.append(f"no dnat rule tcp 40001 -> {inside.ip4}:40001 in the router: "
                            f"{house.mappings()}\n{indent(house.ruleset())}")
        reach = tcp_reach()
        steps.append(f"TCP {outside.ip4} -> {wan}:40001: {reach.stdout.strip()}")
        if reach.returncode != 0:
            problems.append(f"the internet host did not reach the LAN host through TCP 40001: "
                            f"{reach.stdout.strip()}")
        elif f'"{outside.ip4}:' not in reach.stdout:
            problems.append(f"the LAN host did not see the internet host's address: {reach.stdout}")
        done = inside.run([natpmpc, "-g", gateway, "-a", "40001", "40001", "tcp", "0"],
                          check=False)
        if done.returncode != 0:
            problems.append(f"natpmpc could not delete TCP 40001:\n{indent(done.stdout)}")
        if mapped("tcp", 40001):
            problems.append(f"the TCP 40001 rule is still there after the delete: "
                            f"{house.mappings()}")
        if tcp_reach().returncode == 0:
            problems.append("TCP 40001 still reaches the LAN host after the delete")

        echo = inside.popen(["python3", PROBE, "echo", inside.ip4, 40002], "udp-echo")
        wait_ready(echo)
        if udp_reach().returncode == 0:
            problems.append(f"{wan}:40002 reached the LAN host before any mapping")
        # upnpc's library calls an IGD whose external address is private
        # "not connected" and stops; -i goes on (the lab's WAN is private).
        done = inside.run([upnpc, "-i", "-e", "lab check", "-a", inside.ip4, "40002", "40002",
                           "UDP", "600"], check=False, timeout=60)
        steps.append("upnpc -a ... 40002 UDP: " + last_line(done, "redirected"))
        if done.returncode != 0 or "is redirected to internal" not in done.stdout:
            problems.append(f"upnpc did not map UDP 40002:\n{indent(done.stdout + done.stderr)}")
        rules = mapped("udp", 40002)
        want = {"internal_addr": inside.ip4, "internal_port": 40002}
        if not any(all(r[k] == v for k, v in want.items()) for r in rules):
            problems.append(f"no dnat rule udp 40002 -> {inside.ip4}:40002 in the router: "
                            f"{house.mappings()}")
        listed = inside.run([upnpc, "-i", "-l"], check=False, timeout=60)
        if f"UDP 40002->{inside.ip4}:40002" not in listed.stdout:
            problems.append(f"upnpc -l does not list UDP 40002:\n{indent(listed.stdout)}")
        reach = udp_reach()
        steps.append(f"UDP {outside.ip4} -> {wan}:40002: {reach.stdout.strip().splitlines()[:1]}")
        if reach.returncode != 0:
            problems.append(f"the internet host got no answer through UDP 40002: {reach.stdout}")
        done = inside.run([upnpc, "-i", "-d", "40002", "UDP"], check=False, timeout=60)
        if done.returncode != 0:
            problems.append(f"upnpc could not delete UDP 40002:\n{indent(done.stdout)}")
        if mapped("udp", 40002):
            problems.append(f"the UDP 40002 rule is still there after the delete: "
                            f"{house.mappings()}")
        if udp_reach().returncode == 0:
            problems.append("UDP 40002 still reaches the LAN host after the delete")
        left = house.mappings()
        if left:
            problems.append(f"the router still holds mappings at the end: {left}")
    for step in steps:
        say(f"  {step}")
    ctx.results.append({"scenario": name, "steps": steps, "ok": not problems})
    fail_if(problems)


def last_line(done, word):
    lines = [line for line in (done.stdout + done.stderr).splitlines() if word in line]
    return lines[-1].strip() if lines else f"(exit {done.returncode})"


def ticket_only(ctx, name, size=16 * MiB, timeout=120):
    """`fetch TICKET` between hosts: a seeder on the internet prints its
    ticket; a fetcher at home behind a cone NAT and one on another internet
    host are given that one string and nothing else (run in directories of
    their own, with no manifest or offer). Asserted: both fetch the
    manifest from the seeder and then the artifact, with clean receipts
    naming the manifest the ticket named; the seeder answered two manifest
    queries, and two chunk list queries (the lab's manifest is cut at its
    parts)."""
    run_dir = ctx.scratch(name)
    _, manifest, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        seeder = lab.add_internet_host("s", cap=SEED_CAP)
        house = lab.add_home("h", nat="cone", cap=HOME_UPLINK)
        inside = house.add_host("h1")
        outside = lab.add_internet_host("o")
        lab.wait_reachable()
        seed, _ = start_seeder(ctx, seeder, size, seeder.addr(PORT))
        ticket = None
        deadline = time.monotonic() + 10
        while ticket is None and time.monotonic() < deadline:
            events = json_events(seed, "ticket")
            ticket = events[0]["ticket"] if events else None
            time.sleep(0.02)
        if ticket is None:
            raise Failed(f"the seeder printed no ticket:\n{seed.tail()}")
        fetches = []
        for host in (inside, outside):
            out = run_dir / host.name
            out.mkdir(parents=True, exist_ok=True)
            argv = [ctx.bin, "--json", "fetch", ticket, "-o", out, "--yes"]
            fetches.append((host.popen(argv, "fetch-ticket"), out))
        late = wait_all([p for p, _ in fetches], timeout)
        queries = json_events(seed, "manifest-query")
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    manifest_sha = sha256_file(manifest)
    for proc, out in fetches:
        receipt = check_download(proc, out, sha, problems)
        if receipt and manifest_sha not in json.dumps(receipt):
            problems.append(f"{proc.name}: the receipt does not name the manifest {manifest_sha}")
    served = [q for q in queries if "refused" not in q and q.get("asked") == "manifest"]
    if len(served) != 2:
        problems.append(f"the seeder answered {len(served)} manifest queries, not 2: {queries}")
    # The lab's manifest is cut at its parts (the default): each fetch then
    # asks the seeder for the chunk list with the chunks' lengths too.
    lists = [q for q in queries if "refused" not in q and q.get("asked") == "chunk-list"]
    if len(lists) != 2:
        problems.append(f"the seeder answered {len(lists)} chunk list queries, not 2: {queries}")
    say(f"  ticket of {len(ticket)} characters; the seeder answered {len(served)} manifest "
        f"queries; both fetches {'done' if not problems else 'NOT done'}")
    ctx.results.append({"scenario": name, "ticket_len": len(ticket), "queries": len(queries),
                        "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def lan_only(ctx, name, size=16 * MiB, timeout=120):
    """`fetch MANIFEST --lan` with no offer, no peer and no DHT: a seeder
    started with `seed --lan` and a fetcher on one home LAN (behind a cone
    NAT), and the same fetch on a host on the internet, outside the LAN
    (`--give-up-after 15s`). Asserted: the seeder reports announcing at its
    port; the LAN fetcher hears it (a `lan` event `heard` naming the
    seeder's id at its LAN address) and completes with a clean receipt
    whose peer was found on the `lan`; the fetch outside hears nobody
    (multicast DNS does not cross the router) and gives up (exit 1)
    without a byte."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        house = lab.add_home("h", nat="cone")
        seeder = house.add_host("s")
        inside = house.add_host("f")
        outside = lab.add_internet_host("o")
        lab.wait_reachable()
        seed, offer = start_seeder(ctx, seeder, size, seeder.addr(PORT), extra=["--lan"])
        seed_id, _ = parse_offer(offer)
        fetches = []
        for host, extra in ((inside, []), (outside, ["--give-up-after", "15s"])):
            out = run_dir / host.name
            out.mkdir(parents=True, exist_ok=True)
            fetches.append((start_fetch(ctx, host, size, ["--lan"], out, extra=extra,
                                        name="fetch-lan"), out))
        late = wait_all([p for p, _ in fetches], timeout)
        started = json_events(seed, "lan")
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    if not any(e.get("step") == "started" and e.get("port") == PORT for e in started):
        problems.append(f"the seeder did not report announcing at port {PORT}: {started}")
    (near, near_out), (far, far_out) = fetches
    heard = [e for e in json_events(near, "lan") if e.get("step") == "heard"]
    if not any(e.get("peer") == seed_id and seeder.addr(PORT) in e.get("addrs", [])
               for e in heard):
        problems.append(f"the LAN fetcher did not hear the seeder at {seeder.addr(PORT)}: {heard}")
    receipt = check_download(near, near_out, sha, problems)
    if receipt:
        found = [p.get("found_by") for p in receipt.get("source", {}).get("peers", [])]
        if found != ["lan"]:
            problems.append(f"the receipt's peers were found by {found}, not the lan")
    far_heard = [e for e in json_events(far, "lan") if e.get("step") == "heard"]
    if far_heard:
        problems.append(f"the fetch outside the LAN heard {far_heard}")
    if far.returncode != 1:
        problems.append(f"the fetch outside exited {far.returncode}, not 1 (gave up):\n"
                        f"{indent(far.tail())}")
    if (far_out / f"{MODEL}.slm").exists():
        problems.append("the fetch outside the LAN delivered a file")
    say(f"  the LAN fetch heard {len(heard)} neighbour(s) and "
        f"{'completed' if not problems else 'did NOT complete'}; the fetch outside heard "
        f"{len(far_heard)}")
    ctx.results.append({"scenario": name, "heard": len(heard), "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


def home_alone(ctx, name, size=4 * MiB):
    """A publisher at home behind a cone router with no UPnP, NAT-PMP or
    PCP, started with default flags (`seed --listen 0.0.0.0:4433`, no
    relay). Asserted: with its ticket it is told that the ticket reaches
    only its LAN (the `ticket` event's `reach` is `lan-only`; without
    `--json` a warning on stderr, `cli/tests/tickets.rs`), and its verdict
    on who can reach it is `lan-only` with what to do, within 10 s of its
    start (the router question settles first)."""
    with ctx.lab(name) as lab:
        house = lab.add_home("h", nat="cone", cap=HOME_UPLINK)
        seeder = house.add_host("s")
        lab.add_internet_host("o")
        lab.wait_reachable()
        t0 = time.monotonic()
        seed, offer = start_seeder(ctx, seeder, size, f"0.0.0.0:{PORT}")
        _, addrs = parse_offer(offer)
        wait_for_event(seed, "reachability", 10)
        told_at = time.monotonic() - t0
        verdict = json_events(seed, "reachability")[0]
        tickets = json_events(seed, "ticket")
        seed.stop(grace=10)
    problems = []
    if not tickets or tickets[0].get("reach") != "lan-only":
        problems.append(f"the ticket is not said to reach only the LAN: {tickets}")
    if verdict.get("verdict") != "lan-only" or "--relay" not in verdict.get("advice", ""):
        problems.append(f"the verdict is not lan-only with what to do: {verdict}")
    say(f"  offer {addrs}; ticket reach {tickets[0].get('reach') if tickets else None}; "
        f"verdict {verdict.get('verdict')} {told_at:.1f} s after the start")
    ctx.results.append({"scenario": name, "addrs": addrs, "verdict": verdict.get("verdict"),
                        "told_after_s": round(told_at, 2), "ok": not problems})
    fail_if(problems)


def home_seeder_upnp(ctx, name, size=16 * MiB, timeout=90, natpmp=True):
    """A seeder at home behind the miniupnpd router (its uplink 20 Mbit),
    started with no special flag (`seed --listen 0.0.0.0:4433`), and a
    fetcher on the internet given only its offer (`--give-up-after 45s`).
    Asserted: the seeder reports the mapping (PCP when the router speaks
    PCP and NAT-PMP, UPnP when `natpmp` is false and it speaks UPnP IGD
    only) and its offer names the mapped address first; the fetch
    completes with a clean receipt; after the seeder stops (SIGTERM), the
    router holds no mapping to the seeder's address and the seeder
    reported the removal. A seeder that does not ask its router for a
    mapping fails this: its offer names only its LAN address, which the
    internet cannot reach."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    with ctx.lab(name) as lab:
        stun = lab.add_stun_server()
        house = lab.add_home("h", nat="cone", cap=HOME_UPLINK)
        seeder = house.add_host("s")
        fetcher = lab.add_internet_host("f")
        lab.wait_reachable()
        house.start_upnp(stun, natpmp=natpmp)
        seed, offer = start_seeder(ctx, seeder, size, f"0.0.0.0:{PORT}")
        _, addrs = parse_offer(offer)
        out = run_dir / "f"
        t0 = time.monotonic()
        fetch = start_fetch(ctx, fetcher, size, ["--offer", offer], out,
                            extra=["--give-up-after", "45s"])
        late = wait_all([fetch], timeout)
        elapsed = (fetch.ended or time.monotonic()) - t0
        held = house.mappings()
        seed.stop(grace=10)
        after = [m for m in house.mappings() if m["internal_addr"] == seeder.ip4]
        steps = json_events(seed, "port-mapping")
    problems = [f"{p.name} did not finish in {timeout} s" for p in late]
    want = "PCP" if natpmp else "UPnP"
    mapped = [e for e in steps if e.get("step") == "mapped"]
    if not mapped or mapped[0].get("protocol") != want:
        problems.append(f"the seeder did not report a {want} mapping: {steps}")
    elif addrs[:1] != [mapped[0]["external"]]:
        problems.append(f"the offer does not name the mapped address {mapped[0]['external']} "
                        f"first: {addrs}")
    if not any(e.get("step") == "removed" for e in steps):
        problems.append(f"the seeder did not report the mapping removed: {steps}")
    check_download(fetch, out, sha, problems)
    if problems:
        problems.insert(0, (
            f"the fetch from the internet did not complete: the seeder's offer names {addrs}, "
            f"and while it ran the router held {held or 'no mapping'}; a seeder at home is "
            "reached from the internet only through a mapping it asks its router for (UPnP "
            "IGD, NAT-PMP or PCP)"))
    if after:
        problems.append(f"after the seeder stopped, the router still holds its mappings: {after}")
    say(f"  offer {addrs}; mappings while seeding {held}; fetch "
        f"{'done' if fetch.returncode == 0 else f'exit {fetch.returncode}'} after {elapsed:.1f} s")
    ctx.results.append({"scenario": name, "addrs": addrs, "mappings": held, "steps": steps,
                        "mappings_after_stop": after, "fetch_s": round(elapsed, 2),
                        "ok": not problems})
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


# --- the registry ----------------------------------------------------------------


def _uplinks(peers, mib, caps, **kwargs):
    return lambda c, n, tool="minimodel": uplinks(c, n, tool, peers, mib * MiB, caps, **kwargs)


SCENARIOS = {
    "uplinks-8x16-mixed": _uplinks(8, 16, MIXED, timeout=300),
    "uplinks-12x16-mixed": _uplinks(12, 16, MIXED, timeout=300),
    "uplinks-24x32-mixed": _uplinks(24, 32, MIXED),
    "uplinks-40x32-mixed": _uplinks(40, 32, MIXED),
    "uplinks-24x128-mixed": _uplinks(24, 128, MIXED, timeout=1500),
    "uplinks-40x128-mixed": _uplinks(40, 128, MIXED, timeout=1500),
    "uplinks-24x32-10": _uplinks(24, 32, (10,)),
    "uplinks-40x32-one24": _uplinks(40, 32, MIXED, campus=True),
    "homes-4x32-cone": lambda c, n: homes(c, n, 32 * MiB, "cone", timeout=300),
    "homes-4x256-cone": lambda c, n: homes(c, n, 256 * MiB, "cone"),
    "homes-4x256-symmetric": lambda c, n: homes(c, n, 256 * MiB, "symmetric"),
    # Routers whose input chain accepts what comes in unasked: the punch
    # gets through only because each peer opens its router first.
    "homes-4x32-cone-open": lambda c, n: homes(c, n, 32 * MiB, "cone", timeout=300,
                                               firewall=False),
    "homes-4x256-cone-open": lambda c, n: homes(c, n, 256 * MiB, "cone", firewall=False),
    "homes-4x256-cone-upnp": lambda c, n: homes(c, n, 256 * MiB, "cone", upnp=True),
    "homes-4x256-symmetric-upnp": lambda c, n: homes(c, n, 256 * MiB, "symmetric", upnp=True),
    # CI: behind symmetric NATs only the mapped address, named in each
    # peer's Hello, lets homes trade.
    "homes-4x32-symmetric-upnp": lambda c, n: homes(c, n, 32 * MiB, "symmetric", timeout=300,
                                                    upnp=True),
    "neighbours-2x256": lambda c, n: homes(c, n, 256 * MiB, "cone", count=1, per_home=2),
    "neighbours-2x32": lambda c, n: homes(c, n, 32 * MiB, "cone", count=1, per_home=2,
                                          timeout=300),
    "lan-30x256": lambda c, n: lan(c, n, 30, 256 * MiB),
    "lan-30x256-mdns": lambda c, n: lan(c, n, 30, 256 * MiB, peer_extra=["--lan"],
                                        seed_extra=["--lan"]),
    "lan-only": lan_only,
    "nat-behaviour": nat_behaviour,
    "upnp-router": upnp_router,
    "home-seeder-upnp": home_seeder_upnp,
    "home-seeder-igd": lambda c, n: home_seeder_upnp(c, n, natpmp=False),
    "ticket-only": ticket_only,
    "home-alone": home_alone,
    "router-kinds": router_kinds,
}

# Scenarios that run with `--tool libtorrent` (or NAME:libtorrent) too.
LIBTORRENT = [name for name in SCENARIOS if name.startswith("uplinks-")]
