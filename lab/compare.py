"""minimodel against rqbit between two lab hosts on one LAN segment, no cap
(docs/lab.md, "Against rqbit on a LAN"): what a download between two
machines of one home or office looks like, where `benches/compare.sh`
runs both tools on one machine.

Each tool seeds the same fixture on host `s` from the page cache and is
fetched by host `f`, the tools taking turns run by run; every fetched file
is checked against the fixture's SHA-256. rqbit (BitTorrent over TCP) runs
with DHT, trackers, LSD and UPnP off, as in `benches/compare.sh`, from
`target/compare-tools/bin/rqbit` (the script installs it) or `$RQBIT`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from harness import MODEL, Failed, MiB, median, say, sha256_file, start_seeder
from netlab import LabError

SEED_PORT = 4433
RQ_PORT = 42001
RQ_API_PORT = 3031
RQ_QUIET = ["--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward",
            "--disable-lsd", "--disable-trackers"]


def _rqbit():
    given = os.environ.get("RQBIT")
    path = Path(given) if given else (
        Path(__file__).resolve().parent.parent / "target" / "compare-tools" / "bin" / "rqbit")
    if not path.is_file():
        raise Failed(f"no rqbit at {path}: run benches/compare.sh once (it installs it) or set "
                     "RQBIT")
    return path


def _timed(host, argv, name, times):
    """Runs `argv` in `host` under /usr/bin/time; (wall s, CPU s, peak RSS
    KiB) as /usr/bin/time measured them."""
    if times.exists():
        times.unlink()
    proc = host.popen(["/usr/bin/time", "-f", "%e %U %S %M", "-o", times, *argv], name)
    if proc.wait(900) != 0:
        raise Failed(f"{name} exited {proc.returncode}:\n{proc.tail()}")
    wall, user, system, rss = times.read_text().split()[-4:]
    return float(wall), float(user) + float(system), int(rss)


def _run(host, argv, timeout=120):
    """`host.run`, a failure of this scenario (not of the lab) when it fails."""
    try:
        return host.run(argv, timeout=timeout)
    except LabError as error:
        raise Failed(str(error)) from error


def _settle(seeder, fetcher, slm):
    """The fixture in the seeder's page cache, nothing left to write back."""
    _run(seeder, ["dd", f"if={slm}", "of=/dev/null", "bs=1M"], timeout=300)
    _run(fetcher, ["sync"], timeout=300)


def _rq_get(host, path):
    done = host.run(["curl", "-sf", "--max-time", "5", f"http://{host.ip4}:{RQ_API_PORT}{path}"],
                    check=False)
    return done.stdout if done.returncode == 0 else None


def compare_lan(ctx, name, size, runs=3):
    rqbit = _rqbit()
    run_dir = ctx.scratch(name)
    slm, manifest, sha = ctx.artifact(size)
    figures = {"minimodel": [], "rqbit": []}
    with ctx.lab(name) as lab:
        seeder = lab.add_host("s")
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        _, offer = start_seeder(ctx, seeder, size, seeder.addr(SEED_PORT))
        rq_dir = run_dir / "rq-seed"
        rq_dir.mkdir()
        rq_seed = seeder.popen([rqbit, *RQ_QUIET, "--listen-ip", seeder.ip4, "--listen-port", RQ_PORT,
                      "--http-api-listen-addr", f"{seeder.ip4}:{RQ_API_PORT}", "share", slm],
                     "rqbit-share")
        deadline = time.monotonic() + 600
        while '"finished":true' not in (_rq_get(seeder, "/torrents/0/stats/v1") or ""):
            if rq_seed.poll() is not None:
                raise Failed(f"rqbit share exited {rq_seed.returncode}:\n{rq_seed.tail()}")
            if time.monotonic() > deadline:
                raise Failed("the rqbit seeder did not finish checking the file in 600 s")
            time.sleep(0.2)
        torrent = rq_dir / "compare.torrent"
        _run(seeder, ["curl", "-sf", "--max-time", "30", "-o", torrent,
                      f"http://{seeder.ip4}:{RQ_API_PORT}/torrents/0/metadata"])
        for attempt in range(runs):
            for tool in ("minimodel", "rqbit") if attempt % 2 == 0 else ("rqbit", "minimodel"):
                out = run_dir / f"{tool}-out"
                shutil.rmtree(out, ignore_errors=True)
                _settle(seeder, fetcher, slm)
                times = run_dir / f"{tool}.time"
                if tool == "minimodel":
                    argv = [ctx.bin, "--json", "fetch", manifest, "--offer", offer, "-o", out,
                            "--yes"]
                    got = out / f"{MODEL}.slm"
                else:
                    argv = [rqbit, *RQ_QUIET, "--listen-ip", fetcher.ip4, "download",
                            "--disable-http-api", "--initial-peers",
                            f"{seeder.ip4}:{RQ_PORT}", "-o", out, "-e", torrent]
                    got = out / slm.name
                wall, cpu, rss = _timed(fetcher, argv, f"{tool}-fetch-{attempt + 1}", times)
                if not got.is_file() or sha256_file(got) != sha:
                    raise Failed(f"{tool}: the fetched file is not the fixture ({got})")
                figures[tool].append((wall, cpu, rss))
                shutil.rmtree(out, ignore_errors=True)
    mm = median([w for w, _, _ in figures["minimodel"]])
    rq = median([w for w, _, _ in figures["rqbit"]])
    if not mm or not rq:
        raise Failed(f"no time measured: minimodel {mm}, rqbit {rq}")
    result = {
        "scenario": name, "bytes": size, "runs": runs,
        "minimodel_s": [round(w, 2) for w, _, _ in figures["minimodel"]],
        "rqbit_s": [round(w, 2) for w, _, _ in figures["rqbit"]],
        "minimodel_fetch_cpu_s": [round(c, 2) for _, c, _ in figures["minimodel"]],
        "rqbit_fetch_cpu_s": [round(c, 2) for _, c, _ in figures["rqbit"]],
        "minimodel_rss_kib": [r for _, _, r in figures["minimodel"]],
        "rqbit_rss_kib": [r for _, _, r in figures["rqbit"]],
        "rqbit_over_minimodel": round(rq / mm, 3),
        "run": ctx.attempt,
    }
    result["ok"] = True
    ctx.results.append(result)
    say(f"  {size // MiB} MiB over one LAN segment, no cap, {runs} runs each, tools alternating")
    for tool in ("minimodel", "rqbit"):
        runs_text = ", ".join(f"{w:.2f} s ({c:.2f} s CPU, {r / 1024:.1f} MiB)"
                              for w, c, r in figures[tool])
        say(f"  {tool:9} fetch: {runs_text}")
    say(f"  medians: minimodel {mm:.2f} s, rqbit {rq:.2f} s: rqbit / minimodel "
        f"{rq / mm:.3f}")
    shutil.rmtree(run_dir, ignore_errors=True)


SCENARIOS = {
    "compare-lan-256": lambda c, n: compare_lan(c, n, 256 * MiB),
    "compare-lan-1g": lambda c, n: compare_lan(c, n, 1024 * MiB),
    "compare-lan-4g": lambda c, n: compare_lan(c, n, 4096 * MiB, runs=3),
}
