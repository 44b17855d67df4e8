"""The companion in the lab (docs/lab.md, "A library"): one `minimodel
companion run` shares many artifacts on one port and other hosts fetch
them at once, each given only the share's ticket; its memory is sampled
meanwhile; then one large fetch from the companion against the same fetch
from a dedicated `seed` on the same host.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from harness import (
    PEER_CAP, SEED_CAP, Failed, MiB, check_download, fail_if, measure_uplink, say, sha256_file,
    start_seeder, wait_all,
)

# The dedicated seeder's port (the companion picks its own).
SEED_PORT = 4500


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _make(ctx, host, folder, name, size, seed):
    """A fixture and its manifest with model id `name`."""
    slm, manifest = folder / f"{name}.slm", folder / f"{name}.manifest"
    host.run([ctx.bin, "-q", "fixture", slm, "--size", str(size), "--seed", str(seed)])
    host.run([ctx.bin, "-q", "manifest", slm, "--model-id", name, "--publisher-id", "lab",
              "--license-route", "https://example.org/license",
              "--evidence-route", "https://example.org/evidence", "-o", manifest])
    return slm, manifest


def _tickets(ctx, host, library):
    """Model id -> ticket of every serving item."""
    done = host.run([ctx.bin, "--json", "companion", "list", "--library", library])
    tickets = {}
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line).get("item") or {}
        serving = item.get("serving") or {}
        if item.get("state") == "serving" and serving.get("ticket"):
            tickets[item["model_id"]] = serving["ticket"]
    return tickets


def _fetch(ctx, host, source, out, name):
    return host.popen([ctx.bin, "--json", "fetch", source, "-o", out, "--yes"], name)


def library(ctx, name, count, size, big, timeout):
    """One companion on a host capped at 100 Mbit shares `count` artifacts
    of `size` bytes and one of `big` bytes, all on one port; `count` hosts
    (1 Gbit) fetch one small artifact each at once, given only its
    ticket. Reports the companion's RSS idle and its highest sample during
    the fetches, the time to the last verified file against F*count/u_s
    (and checks the companion's transfer log names every upload),
    then the `big` fetch from the companion and from a dedicated `seed` on
    the same host, alternately, twice each."""
    run_dir = ctx.scratch(name)
    files = run_dir / "files"
    files.mkdir(parents=True, exist_ok=True)
    lib = run_dir / "library"
    problems = []
    with ctx.lab(name) as lab:
        home = lab.add_host("c", cap=SEED_CAP)
        hosts = [lab.add_host(f"f{i}", cap=PEER_CAP) for i in range(1, count + 1)]
        lab.wait_reachable()
        u_s = measure_uplink(home, hosts[0])
        arts = [(f"lib{i}",) + _make(ctx, home, files, f"lib{i}", size, i + 1)
                for i in range(1, count + 1)]
        big_slm, big_manifest = _make(ctx, home, files, "libbig", big, 99)
        shas = {model: sha256_file(slm) for model, slm, _ in arts}
        big_sha = sha256_file(big_slm)
        companion = home.popen([ctx.bin, "--json", "companion", "run", "--library", lib,
                                "--api", "127.0.0.1:0", "--serve-ip", "0.0.0.0"], "companion")
        deadline = time.monotonic() + 30
        while not (lib / "api.json").exists():
            if companion.poll() is not None or time.monotonic() > deadline:
                raise Failed(f"the companion did not start:\n{companion.tail()}")
            time.sleep(0.05)
        empty_rss = _rss_kib(companion.pid)
        for model, slm, manifest in arts + [("libbig", big_slm, big_manifest)]:
            home.run([ctx.bin, "-q", "companion", "share", manifest, slm, "--library", lib,
                      "--yes"])
        deadline = time.monotonic() + 60
        while True:
            tickets = _tickets(ctx, home, lib)
            if len(tickets) == count + 1:
                break
            if time.monotonic() > deadline:
                raise Failed(f"{len(tickets)} of {count + 1} shares serve after 60 s")
            time.sleep(0.2)
        ports = set()
        for ticket in tickets.values():
            shown = home.run([ctx.bin, "--json", "ticket", "show", ticket]).stdout
            for line in shown.splitlines():
                if line.startswith("{"):
                    # Each peer as PEER_ID@ADDR[,ADDR...].
                    for peer in json.loads(line).get("peers", []):
                        for addr in peer.split("@", 1)[1].split(","):
                            ports.add(addr.rsplit(":", 1)[1])
        if len(ports) != 1:
            problems.append(f"the shares' tickets name {len(ports)} ports: {sorted(ports)}")
        time.sleep(3)
        idle_rss = _rss_kib(companion.pid)

        tx0 = home.tx_bytes()
        t0 = time.monotonic()
        fetches = []
        for host, (model, _, _) in zip(hosts, arts):
            out = run_dir / host.name
            fetches.append((_fetch(ctx, host, tickets[model], out, "fetch"), out, model))
        peak = idle_rss
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p, _, _ in fetches) and time.monotonic() < deadline:
            peak = max(peak, _rss_kib(companion.pid))
            time.sleep(0.05)
        late = wait_all([p for p, _, _ in fetches], 0)
        tx1 = home.tx_bytes()
        problems += [f"{p.name} did not finish in {timeout} s" for p in late]
        for proc, out, model in fetches:
            check_download(proc, out, shas[model], problems, model=model)
        ends = [p.ended - t0 for p, _, _ in fetches if p.returncode == 0]
        after_rss = _rss_kib(companion.pid)
        # The transfer log: one upload line per fetch, naming its share and
        # every byte of it (a line is written when the peer has left).
        log_path = lib / "log" / "transfers.jsonl"
        served = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            served = {}
            if log_path.exists():
                for line in log_path.read_text().splitlines():
                    entry = json.loads(line)
                    if entry.get("direction") == "upload":
                        model = entry.get("model_id")
                        served[model] = served.get(model, 0) + entry.get("bytes", 0)
            if all(served.get(model, 0) >= size for model, _, _ in arts):
                break
            time.sleep(0.2)
        short = [model for model, _, _ in arts if served.get(model, 0) < size]
        if short:
            problems.append(f"the transfer log has no full upload of {short}: {served}")

        # One big fetch from the companion and from a dedicated seeder on
        # the same host, alternately.
        seeder, offer = start_seeder(ctx, home, None, home.addr(SEED_PORT), name="seed",
                                     files=(big_manifest, big_slm))
        timings = {"companion": [], "seed": []}
        for round_ in range(2):
            for source, how in ((tickets["libbig"], "companion"),
                                (str(big_manifest), "seed")):
                out = run_dir / f"big-{how}-{round_}"
                argv = [ctx.bin, "--json", "fetch", source, "-o", out, "--yes"]
                if how == "seed":
                    argv[4:4] = ["--offer", offer]
                start = time.monotonic()
                proc = hosts[0].popen(argv, f"big-{how}")
                if wait_all([proc], timeout):
                    problems.append(f"{proc.name} did not finish in {timeout} s")
                    continue
                timings[how].append(proc.ended - start)
                check_download(proc, out, big_sha, problems, model="libbig")
                shutil.rmtree(out, ignore_errors=True)
        seeder.stop()
        companion.stop()
    elapsed = max(ends) if len(ends) == count else None
    bound = count * size / u_s
    best = {how: min(t) if t else None for how, t in timings.items()}
    ratio = (best["companion"] / best["seed"]) if best["companion"] and best["seed"] else None
    result = {
        "scenario": name,
        "shares": count + 1,
        "fetches": count,
        "bytes": size,
        "seeder_uplink_MBps": round(u_s / 1e6, 2),
        "bound_s": round(bound, 2),
        "last_fetch_s": round(elapsed, 2) if elapsed else None,
        "time_over_bound": round(elapsed / bound, 3) if elapsed else None,
        "companion_rss_MiB": {"no_items": round(empty_rss / 1024, 1),
                              "idle": round(idle_rss / 1024, 1),
                              "peak_during_fetches": round(peak / 1024, 1),
                              "after": round(after_rss / 1024, 1)},
        "companion_tx_bytes": tx1 - tx0,
        "transfer_log_upload_bytes": served,
        "big_bytes": big,
        "big_fetch_s": {how: [round(t, 2) for t in ts] for how, ts in timings.items()},
        "big_companion_over_seed": round(ratio, 3) if ratio else None,
        "ok": not problems,
        "run": ctx.attempt,
    }
    ctx.results.append(result)
    say(f"  companion host uplink (TCP through {SEED_CAP}): {u_s / 1e6:.2f} MB/s")
    say(f"  companion RSS: {empty_rss / 1024:.1f} MiB with no items, {idle_rss / 1024:.1f} MiB "
        f"idle with {count + 1} shares, highest {peak / 1024:.1f} MiB during {count} fetches, "
        f"{after_rss / 1024:.1f} MiB after")
    if elapsed:
        say(f"  {count} fetches at once, one per share, all on one port: last verified at "
            f"{elapsed:.2f} s; bound count*F/u_s = {bound:.2f} s: {elapsed / bound:.3f}")
    say(f"  the companion sent {(tx1 - tx0) / (count * size):.3f} copies of the {count} files")
    shown = {how: ", ".join(f"{t:.2f}" for t in ts) for how, ts in timings.items()}
    say(f"  {big // MiB} MiB fetch, s: from the companion {shown['companion']}; from a "
        f"dedicated seed {shown['seed']}" +
        (f"; best companion/seed {ratio:.3f}" if ratio else ""))
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


SCENARIOS = {
    "library-20x8": lambda c, n: library(c, n, 20, 8 * MiB, 64 * MiB, 120),
    "library-4x4": lambda c, n: library(c, n, 4, 4 * MiB, 16 * MiB, 60),
}
