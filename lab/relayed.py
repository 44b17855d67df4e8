"""Homes that reach each other only with a relay's help (docs/lab.md,
"Homes and a relay"; docs/relay.md): a `minimodel relay` on an internet
host, publishers and friends behind home routers that map nothing (no
UPnP, NAT-PMP or PCP), each given the publisher's ticket and nothing else.

Not to be confused with lab/lab.py's `relay-*` scenarios, whose "relay"
is the lab's own UDP forwarder that impairs a path (lab/relay).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from harness import (
    MiB, PORT, CpuSampler, Failed, Watch, check_download, check_file, indent, json_events,
    measure_uplink, median, say, start_companion, stop_all,
)

# Where `minimodel relay` listens.
RELAY_PORT = 4434
# A home's uplink (as lab/internet.py's HOME_UPLINK).
HOME_UPLINK = "20mbit"
# The publisher's uplink in the crowd of homes.
PUBLISHER_UPLINK = "40mbit"
# The relay host's uplink.
RELAY_CAP = "200mbit"
# Home uplinks in the crowd, Mbit/s, given in turn (as lab/internet.py's MIXED).
MIXED = (2, 5, 10, 20)


def start_relay(ctx, host, listen, extra=()):
    """`minimodel --json relay` in `host`; returns (process, its peer id)
    once it listens."""
    argv = [ctx.bin, "--json", "relay", "--listen", listen, "--yes", *extra]
    proc = host.popen(argv, "mmrelay")
    deadline = time.monotonic() + 15
    while not json_events(proc, "relay"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the relay did not start:\n{indent(proc.tail())}")
        time.sleep(0.05)
    return proc, json_events(proc, "relay")[0]["peer_id"]


def relay_totals(proc):
    """The relay's last `relay-stats` (what it carried, what it dropped),
    or {} when it printed none."""
    stats = json_events(proc, "relay-stats")
    return stats[-1] if stats else {}


def start_publisher(ctx, host, size, listen, relay_arg, extra=()):
    """`seed` of the fixture in `host` with `--relay`; returns (process,
    its ticket event) once it printed its ticket."""
    slm, manifest, _ = ctx.artifact(size)
    argv = [ctx.bin, "--json", "seed", manifest, slm, "--listen", listen, "--yes"]
    if relay_arg:
        argv += ["--relay", relay_arg]
    proc = host.popen([*argv, *extra], "seed")
    deadline = time.monotonic() + 30
    while not json_events(proc, "ticket"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the publisher printed no ticket:\n{indent(proc.tail())}")
        time.sleep(0.02)
    return proc, json_events(proc, "ticket")[0]


def fetch_ticket(ctx, host, ticket, out, serve=None, extra=()):
    """`fetch TICKET` in `host` into `out`: the ticket and nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [ctx.bin, "--json", "fetch", ticket, "-o", out, "--yes"]
    if serve:
        argv += ["--serve", "--listen", serve]
    return host.popen([*argv, *extra], "fetch-ticket")


def relay_links(proc):
    """What a node said about its relays: the steps of its `relay-link`
    events, in order."""
    return [e.get("step", "") for e in json_events(proc, "relay-link")]


def two_homes(ctx, name, size, nat, firewalls=(True, False), v6=False, pair_rate=None,
              timeout=300):
    """A publisher at home and a friend at another home, both behind
    routers of kind `nat` (cone or symmetric; the publisher's with an
    input firewall when firewalls[0], the friend's when firewalls[1]),
    no UPnP; each home's uplink 20 Mbit; a relay (`minimodel relay`,
    `--pair-rate pair_rate` when given) on an internet host. With `v6`,
    both homes have a global IPv6 /64 behind their router's stateful
    firewall. The publisher runs `seed --relay RELAY` (default flags
    otherwise); the friend `fetch TICKET`, the ticket alone.

    Asserted: the ticket names the relay; the fetch completes with a clean
    receipt (checked by the lab). Reported: the fetch's time over the
    file's time at the home uplink (F/u, u measured by TCP from the
    publisher through its router), its rate from the first verified byte
    to the end over the lesser of the relay's pair rate and u, and the
    bytes the relay carried over the file (its own count of datagrams
    forwarded and its interface's)."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    listen = f"[::]:{PORT}" if v6 else f"0.0.0.0:{PORT}"
    with ctx.lab(name) as lab:
        if v6:
            lab.enable_internet6()
        relay_host = lab.add_internet_host("r", cap=RELAY_CAP)
        home_a = lab.add_home("ha", nat=nat, cap=HOME_UPLINK, firewall=firewalls[0], v6=v6)
        home_b = lab.add_home("hb", nat=nat, cap=HOME_UPLINK, firewall=firewalls[1], v6=v6)
        publisher = home_a.add_host("ha1")
        friend = home_b.add_host("hb1")
        lab.wait_reachable()
        u = measure_uplink(publisher, relay_host)
        extra = ["--pair-rate", str(pair_rate)] if pair_rate else []
        relay, relay_id = start_relay(ctx, relay_host, f"[::]:{RELAY_PORT}" if v6 else
                                      f"0.0.0.0:{RELAY_PORT}", extra)
        relay_arg = f"{relay_id}@{relay_host.ip4}:{RELAY_PORT}"
        seed, ticket_event = start_publisher(ctx, publisher, size, listen, relay_arg)
        ticket = ticket_event["ticket"]
        cpu = CpuSampler().start()
        relay_tx0 = relay_host.tx_bytes()
        t0 = time.monotonic()
        out = run_dir / "friend"
        fetch = fetch_ticket(ctx, friend, ticket, out)
        watch = Watch([fetch], "delivered", t0, exit_is_done=True)
        late = watch.wait(timeout)
        relay_tx = relay_host.tx_bytes() - relay_tx0
        load = cpu.stop()
        stop_all([seed, fetch])
        relay.stop(grace=10)
        totals = relay_totals(relay)
        seed_links = relay_links(seed)
        fetch_links = relay_links(fetch)
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    check_download(fetch, out, sha, problems)
    if relay_id not in json.dumps(ticket_event.get("relays", [])):
        problems.append(f"the ticket does not name the relay {relay_id}: {ticket_event}")
    done = watch.done_at.get(fetch)
    first = watch.first_byte_at.get(fetch)
    one_copy = size / u
    carried = totals.get("forwarded_bytes")
    lesser = min(u, pair_rate) if pair_rate else u
    result = {
        "scenario": name,
        "tool": "minimodel",
        "run": ctx.attempt,
        "rate_scale": ctx.rate_scale,
        "topology": f"two homes behind {nat} NAT"
                    + (" with IPv6 behind stateful firewalls" if v6 else "")
                    + f", input firewalls {list(firewalls)}, a relay",
        "bytes": size,
        "home_uplink_MBps": round(u / 1e6, 3),
        "relay_pair_rate_MBps": round(pair_rate / 1e6, 3) if pair_rate else None,
        "ticket_reach": ticket_event.get("reach"),
        "ticket_len": len(ticket),
        "fetch_s": round(done, 2) if done else None,
        "first_byte_s": round(first, 2) if first else None,
        "one_copy_at_uplink_s": round(one_copy, 2),
        "time_over_uplink": round(done / one_copy, 3) if done else None,
        "rate_over_lesser": (round(size / (done - first) / lesser, 3)
                             if done and first and done > first else None),
        "relay_forwarded_bytes": carried,
        "relay_share": round(carried / size, 4) if carried is not None else None,
        "relay_host_sent_bytes": relay_tx,
        "relay_dropped": totals.get("dropped"),
        "publisher_relay_steps": seed_links,
        "friend_relay_steps": fetch_links,
        "cpu": load,
        "ok": not problems,
    }
    ctx.results.append(result)
    say(f"  ticket ({len(ticket)} characters) reach {result['ticket_reach']}; home uplink "
        f"{u / 1e6:.2f} MB/s, one copy {one_copy:.2f} s")
    if done:
        say(f"  fetch done at {done:.2f} s = {result['time_over_uplink']:.3f} times one copy at "
            f"the uplink; first verified byte at {first or 0:.2f} s; rate after it "
            f"{result['rate_over_lesser']} of {lesser / 1e6:.2f} MB/s")
    say(f"  the relay carried {carried} bytes = {result['relay_share']} of the file "
        f"(its interface sent {relay_tx}); dropped {totals.get('dropped')}")
    say(f"  publisher: {'; '.join(seed_links) or 'no relay step'}")
    say(f"  friend: {'; '.join(fetch_links) or 'no relay step'}")
    say(f"  CPU (/proc/stat): idle {load['idle_pct']:.1f}% over the run")
    shutil.rmtree(run_dir, ignore_errors=True)
    if problems:
        raise Failed("\n".join(problems))


def crowd(ctx, name, peers, size, timeout=600):
    """A publisher at home (a cone router with an input firewall, no UPnP,
    its uplink 40 Mbit) and `peers` friends, each in a home of its own
    with an uplink of 2, 5, 10 or 20 Mbit in turn and a router of mixed
    kinds: every fifth symmetric, every third of the rest without an input
    firewall, every fourth behind a carrier's NAT as well (two carriers);
    one relay (`minimodel relay --max-pairs 512`, 200 Mbit). The publisher
    runs `seed --relay RELAY`; each friend `fetch TICKET --serve
    --seed-after`, the ticket alone, all at once.

    Asserted: every friend is done with a clean receipt (checked by the
    lab) that blames nobody. Reported: the last and the median friend's
    time over the heterogeneous bound T* = max(F/u_s, N*F/(u_s + sum u_i))
    (u_s measured by TCP from the publisher; u_i each cap times the
    payload share TCP got), and what the relay carried (bytes, copies,
    channels, dropped)."""
    run_dir = ctx.scratch(name)
    _, _, sha = ctx.artifact(size)
    caps = [MIXED[i % len(MIXED)] for i in range(peers)]
    kinds = []
    with ctx.lab(name) as lab:
        relay_host = lab.add_internet_host("r", cap=RELAY_CAP)
        carriers = [lab.add_carrier("cg1"), lab.add_carrier("cg2")]
        pub_home = lab.add_home("hp", nat="cone", cap=PUBLISHER_UPLINK)
        publisher = pub_home.add_host("hp1")
        hosts = []
        for i in range(peers):
            symmetric = i % 5 == 4
            open_ = not symmetric and i % 3 == 1
            carrier = carriers[(i // 4) % 2] if i % 4 == 2 else None
            house = lab.add_home(f"h{i + 1}", nat="symmetric" if symmetric else "cone",
                                 cap=f"{caps[i]}mbit", firewall=not open_, carrier=carrier)
            kinds.append(("symmetric" if symmetric else "cone")
                         + ("" if not open_ else " open")
                         + (f" behind {carrier.name}" if carrier else ""))
            hosts.append(house.add_host(f"h{i + 1}a"))
        lab.wait_reachable(timeout=30)
        u_s = measure_uplink(publisher, relay_host)
        relay, relay_id = start_relay(ctx, relay_host, f"0.0.0.0:{RELAY_PORT}",
                                      ["--max-pairs", "512"])
        relay_arg = f"{relay_id}@{relay_host.ip4}:{RELAY_PORT}"
        seed, ticket_event = start_publisher(ctx, publisher, size, f"0.0.0.0:{PORT}", relay_arg)
        ticket = ticket_event["ticket"]
        cpu = CpuSampler().start()
        relay_tx0 = relay_host.tx_bytes()
        seed_tx0 = pub_home.tx_bytes()
        t0 = time.monotonic()
        fetches = []
        for host in hosts:
            out = run_dir / host.name
            fetches.append((fetch_ticket(ctx, host, ticket, out, serve=f"0.0.0.0:{PORT}",
                                         extra=["--seed-after"]), out))
        procs = [p for p, _ in fetches]
        watch = Watch(procs, "delivered", t0, exit_is_done=True)
        late = watch.wait(timeout)
        relay_tx = relay_host.tx_bytes() - relay_tx0
        seed_tx = pub_home.tx_bytes() - seed_tx0
        load = cpu.stop()
        load["peers_cpu_s"] = round(sum(watch.cpu.values()), 1)
        stop_all([*procs, seed])
        relay.stop(grace=10)
        totals = relay_totals(relay)
        home_bits = [h.home.router.cap_bits for h in hosts]
        seed_bits = pub_home.router.cap_bits
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    for proc, out in fetches:
        check_download(proc, out, sha, problems)
    payload_share = u_s / (seed_bits / 8)
    bound = max(size / u_s, peers * size / (u_s + sum(payload_share * b / 8 for b in home_bits)))
    done = [watch.done_at.get(p) for p in procs]
    finished = [t for t in done if t is not None]
    last = max(finished) if len(finished) == peers else None
    mid = median(finished) if len(finished) == peers else None
    carried = totals.get("forwarded_bytes")
    by_kind = {}
    for kind, t in zip(kinds, done):
        by_kind.setdefault(kind.split(" ")[0], []).append(t)
    result = {
        "scenario": name,
        "tool": "minimodel",
        "run": ctx.attempt,
        "rate_scale": ctx.rate_scale,
        "topology": f"a publisher at home and {peers} homes of mixed routers, one relay",
        "peers": peers,
        "bytes": size,
        "kinds": kinds,
        "seeder_uplink_MBps": round(u_s / 1e6, 3),
        "bound_s": round(bound, 2),
        "last_peer_s": round(last, 2) if last else None,
        "median_peer_s": round(mid, 2) if mid else None,
        "time_over_bound": round(last / bound, 3) if last else None,
        "median_over_bound": round(mid / bound, 3) if mid else None,
        "median_peer_s_by_router": {k: round(median(v), 2) if None not in v else None
                                    for k, v in sorted(by_kind.items())},
        "seeder_copies": round(seed_tx / size, 3),
        "relay_forwarded_bytes": carried,
        "relay_copies": round(carried / size, 3) if carried is not None else None,
        "relay_host_sent_bytes": relay_tx,
        "relay_introduced": totals.get("introduced"),
        "relay_dropped": totals.get("dropped"),
        "peers_never_got_a_byte": sum(1 for p in procs if not watch.last_bytes.get(p)
                                      and watch.done_at.get(p) is None),
        "cpu": load,
        "ok": not problems,
    }
    ctx.results.append(result)
    say(f"  routers: {', '.join(kinds)}")
    say(f"  publisher uplink {u_s / 1e6:.2f} MB/s; bound T* {bound:.2f} s")
    if last:
        say(f"  last friend done at {last:.2f} s = {result['time_over_bound']:.3f} T*; median "
            f"{mid:.2f} s = {result['median_over_bound']:.3f} T*; by router "
            f"{result['median_peer_s_by_router']}")
    else:
        say(f"  {peers - len(finished)} of {peers} friends were not done")
    say(f"  the publisher's home sent {result['seeder_copies']} copies; the relay carried "
        f"{carried} bytes = {result['relay_copies']} copies (its interface sent {relay_tx}), "
        f"made {totals.get('introduced')} introductions, dropped {totals.get('dropped')}")
    say(f"  CPU (/proc/stat): idle {load['idle_pct']:.1f}% over the run; the friends took "
        f"{load['peers_cpu_s']} CPU seconds")
    shutil.rmtree(run_dir, ignore_errors=True)
    if problems:
        raise Failed("\n".join(problems))


PAGE = Path(__file__).resolve().parent / "page.py"


def _page(host, lib, profile, name, fetch=None, timeout=300):
    """`lab/page.py` against the companion of `lib` in `host`: with
    `fetch`, the ticket pasted into its page's download form, serving
    while it fetches; else until the page shows who can reach an item.
    Returns the process."""
    api = json.loads((lib / "api.json").read_text())["url"]
    argv = ["python3", PAGE, "--api", api, "--token-file", lib / "token", "--profile", profile,
            "--timeout", str(timeout)]
    if fetch:
        argv += ["--fetch", fetch, "--serve"]
    return host.popen(argv, name)


def _page_events(proc, kind):
    """The JSON lines of kind `kind` that `lab/page.py` printed."""
    events = []
    for line in proc.stdout_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == kind:
                events.append(event)
    return events


def _items(ctx, host, lib):
    """The companion's items as `companion list --json` shows them."""
    done = host.run([ctx.bin, "--json", "companion", "list", "--library", lib])
    items = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line).get("item")
            if item:
                items.append(item)
    return items


def companion_homes(ctx, name, size, nat, firewalls, publisher, friend, pair_rate=None,
                    timeout=300):
    """Two homes behind routers of kind `nat` (no UPnP; input firewalls
    as `firewalls` says, the publisher's first), each uplink 20 Mbit, and a
    relay on an internet host, as `two_homes`; the publisher and the
    friend each the companion or the command line (`publisher`: "companion"
    runs `companion run --relay RELAY` and `companion share`, "seed" runs
    `seed --relay RELAY`; `friend`: "companion" runs `companion run` with
    no relay of its own and its page, in headless Chromium on the friend's
    host (`lab/page.py`), is given the ticket in its download form, with
    "serve verified chunks while fetching" ticked, and told yes in its
    consent dialog; "fetch" runs `fetch TICKET`), the share's
    ticket the friend's only input.

    Asserted: the ticket names the relay; the file is verified (its bytes
    hashed here) within 1.5 times one copy at the home uplink, or at the
    pair rate when the relay carries it; where the routers allow a direct
    path (cone) the relay carries at most 5 % of the bytes; a companion
    that serves says who can reach it (its item's `reach`), naming the
    relay, and its page shows it; the friend's page shows its serving
    download's reachability. The friend's time runs
    from the yes in its page's consent dialog to the page listing the
    download as finished. Reported: as `two_homes`, with each side's
    reach."""
    run_dir = ctx.scratch(name)
    slm, manifest, sha = ctx.artifact(size)
    problems = []
    with ctx.lab(name) as lab:
        relay_host = lab.add_internet_host("r", cap=RELAY_CAP)
        home_a = lab.add_home("ha", nat=nat, cap=HOME_UPLINK, firewall=firewalls[0])
        home_b = lab.add_home("hb", nat=nat, cap=HOME_UPLINK, firewall=firewalls[1])
        pub_host = home_a.add_host("ha1")
        friend_host = home_b.add_host("hb1")
        lab.wait_reachable()
        u = measure_uplink(pub_host, relay_host)
        extra = ["--pair-rate", str(pair_rate)] if pair_rate else []
        relay, relay_id = start_relay(ctx, relay_host, f"0.0.0.0:{RELAY_PORT}", extra)
        relay_arg = f"{relay_id}@{relay_host.ip4}:{RELAY_PORT}"
        procs = []
        publisher_reach = None
        publisher_page_reach = None
        if publisher == "companion":
            lib_a = run_dir / "publisher-library"
            procs.append(start_companion(ctx, pub_host, lib_a,
                                         ["--relay", relay_arg] if relay_arg else ()))
            pub_host.run([ctx.bin, "-q", "companion", "share", manifest, slm, "--library", lib_a,
                          "--yes"])
            deadline = time.monotonic() + 60
            while True:
                items = _items(ctx, pub_host, lib_a)
                item = items[0] if items else {}
                ticket = (item.get("serving") or {}).get("ticket")
                reach = item.get("reach") or {}
                # Once registered, the ticket names the relay and the
                # verdict counts it.
                if ticket and relay_host.ip4 in json.dumps(reach.get("relays", [])):
                    publisher_reach = reach
                    break
                if time.monotonic() > deadline:
                    raise Failed(f"the companion's share names no relay in 60 s: {item}")
                time.sleep(0.2)
            # Its page shows the same: the item's reachability line.
            page = _page(pub_host, lib_a, run_dir / "publisher-profile", "publisher-page",
                         timeout=60)
            if page.wait(120) != 0:
                page.stop()
                problems.append(f"the publisher's page shows no reachability:\n"
                                f"{indent(page.tail())}")
            publisher_page_reach = [e["text"] for e in _page_events(page, "reach")]
            shown = pub_host.run([ctx.bin, "--json", "ticket", "show", ticket]).stdout
            ticket_relays = json.dumps([json.loads(line).get("relays") for line in
                                        shown.splitlines() if line.startswith("{")])
        else:
            seed, ticket_event = start_publisher(ctx, pub_host, size, f"0.0.0.0:{PORT}",
                                                 relay_arg)
            procs.append(seed)
            ticket = ticket_event["ticket"]
            ticket_relays = json.dumps(ticket_event.get("relays", []))
            # Who can use the ticket, by what it names (a relay: anyone);
            # the node's own verdict comes in its `reachability` events.
            publisher_reach = {"ticket": ticket_event.get("reach")}
        if relay_id not in ticket_relays:
            problems.append(f"the ticket does not name the relay {relay_id}: {ticket_relays}")
        relay_tx0 = relay_host.tx_bytes()
        t0 = time.monotonic()
        if friend == "companion":
            lib_b = run_dir / "friend-library"
            procs.append(start_companion(ctx, friend_host, lib_b))
            fetch = _page(friend_host, lib_b, run_dir / "friend-profile", "friend-page",
                          fetch=ticket, timeout=timeout)
        else:
            lib_b = None
            out = run_dir / "friend"
            fetch = fetch_ticket(ctx, friend_host, ticket, out)
        watch = Watch([fetch], "delivered", t0, exit_is_done=True)
        late = watch.wait(timeout)
        relay_tx = relay_host.tx_bytes() - relay_tx0
        if publisher != "companion":
            verdicts = json_events(procs[0], "reachability")
            if verdicts:
                publisher_reach["verdict"] = verdicts[-1].get("verdict")
                publisher_reach["detail"] = verdicts[-1].get("detail")
        friend_reach = None
        friend_page_reach = None
        if lib_b is not None:
            items = _items(ctx, friend_host, lib_b)
            item = items[0] if items else {}
            friend_reach = item.get("reach")
            friend_page_reach = [e["text"] for e in _page_events(fetch, "reach")]
            if not friend_page_reach:
                problems.append(f"the friend's page showed no reachability for its serving "
                                f"download (its item's last: {friend_reach})")
            if item.get("state") != "done" or not item.get("file"):
                problems.append(f"the friend's download is not done: {item}")
            else:
                check_file("the friend's companion", Path(item["file"]), sha, problems)
        stop_all([fetch, *procs])
        relay.stop(grace=10)
        totals = relay_totals(relay)
    problems += [f"{p.name} was not done in {timeout} s" for p in late]
    if lib_b is None:
        check_download(fetch, out, sha, problems)
    elif fetch.returncode != 0:
        problems.append(f"the friend's page exited {fetch.returncode}:\n"
                        f"{indent(fetch.tail())}")
    if publisher == "companion" and not publisher_reach:
        problems.append("the publisher's companion says nothing of who can reach it")
    done = watch.done_at.get(fetch)
    if lib_b is not None:
        # From the yes in the friend's page to the page listing it done.
        consented = _page_events(fetch, "consented")
        finished = _page_events(fetch, "done")
        done = (finished[0]["t"] - consented[0]["t"]) if consented and finished else None
    one_copy = size / u
    lesser = min(u, pair_rate) if pair_rate else u
    carried = totals.get("forwarded_bytes")
    share = carried / size if carried is not None else None
    if done and done > 1.5 * size / lesser:
        problems.append(f"done at {done:.2f} s, over 1.5 times one copy at "
                        f"{lesser / 1e6:.2f} MB/s ({size / lesser:.2f} s)")
    if nat == "cone" and (share is None or share > 0.05):
        problems.append(f"the relay carried {share} of the file where a punch gets through")
    result = {
        "scenario": name,
        "tool": "minimodel",
        "run": ctx.attempt,
        "rate_scale": ctx.rate_scale,
        "topology": f"two homes behind {nat} NAT, input firewalls {list(firewalls)}, a relay; "
                    f"{publisher} at one, {friend} at the other",
        "bytes": size,
        "home_uplink_MBps": round(u / 1e6, 3),
        "relay_pair_rate_MBps": round(pair_rate / 1e6, 3) if pair_rate else None,
        "fetch_s": round(done, 2) if done else None,
        "one_copy_at_uplink_s": round(one_copy, 2),
        "time_over_uplink": round(done / one_copy, 3) if done else None,
        "time_over_lesser": round(done / (size / lesser), 3) if done else None,
        "relay_forwarded_bytes": carried,
        "relay_share": round(share, 4) if share is not None else None,
        "relay_host_sent_bytes": relay_tx,
        "publisher_reach": publisher_reach,
        "publisher_page_reach": publisher_page_reach,
        "friend_reach": friend_reach,
        "friend_page_reach": friend_page_reach,
        "ok": not problems,
    }
    ctx.results.append(result)
    say(f"  {publisher} at home A, {friend} at home B; home uplink {u / 1e6:.2f} MB/s, "
        f"one copy {one_copy:.2f} s")
    if done:
        say(f"  verified at {done:.2f} s = {result['time_over_uplink']:.3f} times one copy at the "
            f"uplink ({result['time_over_lesser']:.3f} at the lesser of it and the pair rate)")
    say(f"  the relay carried {carried} bytes = {result['relay_share']} of the file")
    say(f"  publisher's reach: {publisher_reach}; its page: {publisher_page_reach}")
    if lib_b is not None:
        say(f"  the friend's page: {friend_page_reach}")
    shutil.rmtree(run_dir, ignore_errors=True)
    if problems:
        raise Failed("\n".join(problems))


SCENARIOS = {
    # A cone router with an input firewall at the publisher's home, one
    # without at the friend's: the punch gets through; the relay only
    # introduces.
    "relay-homes-cone": lambda c, n: two_homes(c, n, 32 * MiB, "cone", firewalls=(True, False)),
    "relay-homes-cone-open": lambda c, n: two_homes(c, n, 32 * MiB, "cone",
                                                    firewalls=(False, True)),
    # Symmetric routers at both ends: the relay carries the file, at its
    # pair rate (12 Mbit/s, below the homes' 20 Mbit).
    "relay-homes-symmetric": lambda c, n: two_homes(c, n, 64 * MiB, "symmetric",
                                                    firewalls=(True, True),
                                                    pair_rate=1_500_000),
    # IPv6 homes behind stateful firewalls: introduced, they punch
    # directly; the relay carries nothing.
    "relay-homes-ipv6": lambda c, n: two_homes(c, n, 32 * MiB, "cone", firewalls=(True, True),
                                               v6=True),
    "relay-homes-24x32-mixed": lambda c, n: crowd(c, n, 24, 32 * MiB),
    # The companion at home, through the same relay (issue: the companion
    # reaches across homes): a share on one companion and its ticket
    # fetched by another; behind cone routers the punch gets through,
    # behind symmetric NATs the relay carries it at its pair rate. Then
    # the command line at one end and the companion at the other, each
    # way.
    "relay-homes-companions-cone": lambda c, n: companion_homes(
        c, n, 32 * MiB, "cone", (True, False), "companion", "companion"),
    "relay-homes-companions-symmetric": lambda c, n: companion_homes(
        c, n, 32 * MiB, "symmetric", (True, True), "companion", "companion",
        pair_rate=1_500_000),
    "relay-homes-seed-to-companion-symmetric": lambda c, n: companion_homes(
        c, n, 32 * MiB, "symmetric", (True, True), "seed", "companion", pair_rate=1_500_000),
    "relay-homes-companion-to-fetch-symmetric": lambda c, n: companion_homes(
        c, n, 32 * MiB, "symmetric", (True, True), "companion", "fetch", pair_rate=1_500_000),
}
