"""Mirrors in the lab (docs/lab.md, "Mirrors"): a publisher's HTTPS copy of
the artifact (lab/mirrorhost.py) on an internet host, no seeder, and
serving peers at home uplinks that start from it and trade among
themselves.

The mirror's certificate comes from a test authority made for the run
with `openssl`; the peers trust it the way a user trusts an extra
authority: `SSL_CERT_FILE` names its PEM file (docs/swarm.md, "Mirrors").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness import (
    LT_CLIENT, LT_PYTHON, MODEL, MiB, PORT, CpuSampler, Failed, Watch, check_download,
    chunk_size_of, fail_if, indent, json_events, measure_uplink, median, require_libtorrent, say,
    sha256_file, start_seeder, stop_all, wait_all,
)
from internet import LT_PORT, MIXED, UPLINK_SEED_CAP, report, summarize, wait_for_event
from netlab import LabError, tool_path

MIRROR_HOST = Path(__file__).resolve().parent / "mirrorhost.py"
MIRROR_PORT = 8443


def make_authority(folder, ip):
    """A test authority and a certificate for `ip` signed by it, made now
    with `openssl` (EC P-256, valid two days). Returns (authority PEM,
    host certificate PEM, host key)."""
    openssl = tool_path("openssl")
    if not openssl:
        raise LabError("openssl is missing: the mirror's test authority is made with it "
                       "(Debian: apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = folder / "ca.key", folder / "ca.pem"
    key, csr, pem = folder / "host.key", folder / "host.csr", folder / "host.pem"
    ext = folder / "host.ext"
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")

    def run(argv):
        done = subprocess.run([openssl, *map(str, argv)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise LabError(f"openssl {argv[0]} failed: {done.stdout.strip()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["req", "-x509", *ec, "-keyout", ca_key, "-out", ca_pem, "-days", "2",
         "-subj", "/CN=minimodel lab test authority",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={ip}"])
    run(["x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
         "-out", pem, "-days", "2", "-extfile", ext])
    return ca_pem, pem, key


def mirrored_artifact(ctx, size):
    """The fixture of `size` bytes with a manifest naming its chunk list,
    and the chunk list (`minimodel manifest --chunk-list-out`), made once
    per run: (slm, manifest, chunk list, sha256)."""
    key = ("mirrored", size)
    if key in ctx.artifacts:
        return ctx.artifacts[key]
    folder = ctx.workdir / "artifacts" / f"mirrored-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    slm = folder / f"{MODEL}.slm"
    manifest, chunk_list = folder / f"{MODEL}.manifest", folder / f"{MODEL}.slm.chunk-list"
    subprocess.run([ctx.bin, "fixture", slm, "--size", str(size), "--force"], check=True,
                   stdout=subprocess.DEVNULL)
    done = subprocess.run(
        [ctx.bin, "--json", "manifest", slm, "--model-id", MODEL, "--publisher-id", "lab",
         "--license-route", "https://example.org/license",
         "--evidence-route", "https://example.org/evidence",
         "--chunk-list-route", f"https://example.org/{MODEL}.slm.chunk-list",
         "--chunk-list-out", chunk_list, "-o", manifest]
        + (["--chunk-size", ctx.chunk_size_arg] if ctx.chunk_size_arg else []),
        check=True, stdout=subprocess.PIPE, text=True)
    sha = json.loads(done.stdout.strip().splitlines()[-1])["artifact_sha256"]
    ctx.artifacts[key] = (slm, manifest, chunk_list, sha)
    return ctx.artifacts[key]


def start_mirror(host, slm, chunk_list, folder):
    """lab/mirrorhost.py on `host` with a certificate for its address from a
    new test authority; returns (process, URL, authority PEM) once it
    listens."""
    ca, cert, key = make_authority(folder, host.ip4)
    proc = host.popen(["python3", MIRROR_HOST, "--listen", host.ip4, "--port", MIRROR_PORT,
                       "--cert", cert, "--key", key, "--file", slm, "--chunk-list", chunk_list],
                      "mirror")
    deadline = time.monotonic() + 15
    while not json_events(proc, "ready"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the mirror host did not start:\n{indent(proc.tail())}")
        time.sleep(0.05)
    return proc, f"https://{host.ip4}:{MIRROR_PORT}/{slm.name}", ca


NGINX_CONF = """daemon off;
user root;
worker_processes 2;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen {ip}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        root {root};
    }}
}}
"""


def start_nginx(host, slm, folder):
    """nginx (Debian: nginx-light) on `host` serving the folder of `slm`
    (the file and its chunk list beside it) over HTTPS, as a mirror people
    use is served; returns (process, URL, authority PEM) once it accepts
    connections."""
    nginx = tool_path("nginx")
    if not nginx:
        raise LabError("nginx is missing: this scenario serves the mirror with it "
                       "(Debian: apt-get install nginx-light)")
    ca, cert, key = make_authority(folder, host.ip4)
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, ip=host.ip4, port=MIRROR_PORT, cert=cert,
                                      key=key, root=slm.parent))
    proc = host.popen([nginx, "-c", conf, "-e", folder / "error.log"], "nginx")
    probe = ("import socket,sys\n"
             f"socket.create_connection(('{host.ip4}', {MIRROR_PORT}), 1).close()")
    deadline = time.monotonic() + 15
    while host.run(["python3", "-c", probe], timeout=5, check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"nginx did not start:\n{indent(proc.tail())}")
        time.sleep(0.05)
    return proc, f"https://{host.ip4}:{MIRROR_PORT}/{slm.name}", ca


def trusting(ca):
    """The environment of a process that trusts the test authority `ca`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SSL_CERT_DIR", "MINIMODEL_MIRROR_TOKENS")}
    env["SSL_CERT_FILE"] = str(ca)
    return env


def offer_of(proc, timeout=30):
    """`PEER_ID@ADDR` from a serving fetch's `offer` event."""
    deadline = time.monotonic() + timeout
    while True:
        offers = json_events(proc, "offer")
        if offers:
            return f"{offers[-1]['peer_id']}@{','.join(offers[-1]['addrs'])}"
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"{proc.name} printed no offer:\n{indent(proc.tail())}")
        time.sleep(0.01)


def mirror_cold(ctx, name, tool, peers, size, caps, mirror_cap=UPLINK_SEED_CAP, timeout=900):
    """One HTTPS mirror (lab/mirrorhost.py) on an internet host capped at
    `mirror_cap` and no seeder; `peers` peers at home uplinks `caps`
    (Mbit/s, in turn), each on a /24 of its own, downloads uncapped.

    minimodel: each peer runs `fetch --serve --seed-after --mirror URL`.
    The first peer starts with the mirror alone, and every other one is
    given its offer as well (`--peer ID@ADDR`: the first downloader's
    ticket posted beside the mirror's URL); peer exchange does the rest.
    The clock starts when the first peer is started; the others start
    when it printed its offer (`others_started_s`).

    libtorrent (`tool`, lab/ltclient.py): the same file from the same
    server as a web seed (BEP 19: the .torrent names the mirror's URL, over
    the same HTTPS and test authority), every peer given the first peer's
    address (the same as minimodel's peers are given) and libtorrent's
    peer exchange; the clock starts when every client listens.

    Asserted: every peer is done and exits 0 when stopped, its file hashed
    here to the fixture's SHA-256; minimodel's receipts blame no peer and
    name the mirror, dropped by nobody; no libtorrent piece fails its hash
    check. Reported: the mirror's copies (its interface's sent bytes over
    the file size), the last and the median peer over the heterogeneous
    bound counting the mirror as the seeder (as the `uplinks-*`
    scenarios: T* = max(F/u_s, N*F/(u_s + sum u_i)), u_s a TCP transfer
    through the mirror's cap), and the CPU's idle share."""
    result, lines, problems = cold_start(ctx, name, tool, peers, size, caps, mirror_cap, timeout)
    report(ctx, name, result, lines)
    shutil.rmtree(ctx.scratch(name), ignore_errors=True)
    fail_if(problems)


def cold_start(ctx, name, tool, peers, size, caps, mirror_cap, timeout):
    """One run of `mirror_cold` with `tool`: (result, report lines,
    problems)."""
    caps_mbit = [caps[i % len(caps)] for i in range(peers)]
    run_dir = ctx.scratch(name)
    slm, manifest, chunk_list, sha = mirrored_artifact(ctx, size)
    with ctx.lab(name) as lab:
        mirror_host = lab.add_internet_host("m", cap=mirror_cap)
        hosts = [lab.add_internet_host(f"p{i}", cap=f"{c}mbit")
                 for i, c in enumerate(caps_mbit, 1)]
        lab.wait_reachable()
        u_s = measure_uplink(mirror_host, hosts[0])
        server, url, ca = start_mirror(mirror_host, slm, chunk_list, run_dir / "tls")
        env = trusting(ca)
        if tool == "libtorrent":
            run = cold_libtorrent(ctx, mirror_host, hosts, slm, manifest, url, env, run_dir,
                                  timeout)
        else:
            run = cold_minimodel(ctx, mirror_host, hosts, manifest, url, env, run_dir, timeout)
        server.stop()
    problems = run["problems"]
    downloads = run.pop("downloads")
    if tool == "minimodel":
        mirror_bytes_in_receipts(run, downloads, url, sha, problems)
    for proc, out in downloads if tool == "libtorrent" else ():
        path = out / slm.name
        digest = sha256_file(path) if path.exists() else None
        if proc in run["done"] and digest != sha:
            problems.append(f"{proc.name}: {path} has SHA-256 {digest}, not {sha}")
    payload_share = u_s / (mirror_host.cap_bits / 8)
    uplinks_sum = sum(payload_share * h.cap_bits / 8 for h in hosts)
    bound = max(size / u_s, peers * size / (u_s + uplinks_sum))
    result = summarize(run, size, bound, u_s)
    by_cap = {}
    for cap, t in zip(caps_mbit, run["done_at"]):
        by_cap.setdefault(cap, []).append(t)
    from_mirror = [b for b in run["from_seeder"] if b]
    result.update({
        "mirror_cap": mirror_host.cap,
        "others_started_s": run.get("others_started_s"),
        "peer_caps_mbit": sorted(set(caps_mbit)),
        "payload_share_of_cap": round(payload_share, 3),
        "mirror_copies": result["seeder_copies"],
        "mirror_bytes_in_receipts_copies": round(sum(from_mirror) / size, 3),
        "peers_sent_copies": round(sum(run["sent_peers"].values()) / size, 3),
        "median_peer_s_by_cap": {str(c): round(median(v), 2) if None not in v else None
                                 for c, v in sorted(by_cap.items())},
        "mirror_requests": (json_events(server, "stopped") or [{}])[-1].get("requests"),
    })
    counted = "receipts count" if tool == "minimodel" else "clients counted"
    lines = [f"the mirror sent {result['mirror_copies']:.3f} copies (its interface); the "
             f"{counted} {result['mirror_bytes_in_receipts_copies']:.3f} copies from it; "
             f"the peers sent {result['peers_sent_copies']:.3f} copies",
             "median done by uplink (Mbit/s): "
             + ", ".join(f"{c}: {v}" for c, v in result["median_peer_s_by_cap"].items()),
             f"the mirror's answers by status: {result['mirror_requests']}"]
    if run.get("others_started_s") is not None:
        lines.append(f"the first peer printed its offer, and the others were started, at "
                     f"{run['others_started_s']:.2f} s")
    return result, lines, problems


def cold_minimodel(ctx, mirror_host, hosts, manifest, url, env, run_dir, timeout):
    """The minimodel peers of `mirror_cold`; what happened, for `summarize`."""
    extra = ["--seed-after", "--mirror", url, *ctx.peer_args]
    cpu = CpuSampler().start()
    sent0 = mirror_host.tx_bytes()
    sent0_peers = {h.name: h.tx_bytes() for h in hosts}
    t0 = time.monotonic()

    def start(host, given):
        out = run_dir / host.name
        argv = [ctx.bin, "--json", "fetch", manifest, *given, "-o", out, "--yes",
                "--serve", "--listen", host.addr(PORT), *extra]
        return host.popen(argv, "fetch", env=env), out

    fetches = [start(hosts[0], [])]
    first = offer_of(fetches[0][0])
    others_at = time.monotonic() - t0
    fetches += [start(h, ["--peer", first]) for h in hosts[1:]]
    procs = [p for p, _ in fetches]
    watch = Watch(procs, "delivered", t0, exit_is_done=True)
    late = watch.wait(timeout)
    sent = mirror_host.tx_bytes() - sent0
    sent_peers = {h.name: h.tx_bytes() - sent0_peers[h.name] for h in hosts}
    load = cpu.stop()
    load["peers_cpu_s"] = round(sum(watch.cpu.values()), 1)
    stop_all(procs)
    return {
        "tool": "minimodel",
        "downloads": fetches,
        "done": watch.done_at,
        "done_at": [watch.done_at.get(p) for p in procs],
        "first_byte_at": [watch.first_byte_at.get(p) for p in procs],
        "last_bytes": [watch.last_bytes.get(p, 0) for p in procs],
        "sent": {"seeder": sent},
        "sent_peers": sent_peers,
        "cpu": load,
        "others_started_s": round(others_at, 2),
        "problems": [f"{p.name} was not done in {timeout} s" for p in late],
    }


def mirror_bytes_in_receipts(run, downloads, url, sha, problems):
    """Each minimodel peer's bytes from the mirror and bytes wasted, as its
    receipt counts them, into `run`; a receipt that is missing, blames, or
    does not name the mirror is a problem."""
    from_mirror, wasted = [], []
    for proc, out in downloads:
        receipt = check_download(proc, out, sha, problems)
        wasted.append(receipt["source"].get("bytes_wasted", 0) if receipt else None)
        if not receipt:
            from_mirror.append(None)
            continue
        listed = receipt["source"].get("mirrors") or []
        if [m.get("url") for m in listed] != [url]:
            problems.append(f"{proc.name}: the receipt's mirrors are {listed}, not {url}")
        for m in listed:
            if m.get("blamed") or m.get("bad_chunks") or m.get("left"):
                problems.append(f"{proc.name}: the mirror was dropped: {m}")
        from_mirror.append(sum(m.get("bytes", 0) for m in listed))
    run["from_seeder"] = from_mirror
    run["wasted"] = wasted


def cold_libtorrent(ctx, mirror_host, hosts, slm, manifest, url, env, run_dir, timeout):
    """The libtorrent peers of `mirror_cold`: a .torrent of the fixture
    (pieces the manifest's chunks) naming `url` as its web seed; what
    happened, for `summarize`."""
    require_libtorrent()
    torrent = run_dir / f"{slm.name}.torrent"
    made = subprocess.run([LT_PYTHON, LT_CLIENT, "make", slm, torrent, "--piece-size",
                           str(chunk_size_of(manifest)), "--url-seed", url],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if made.returncode != 0:
        raise Failed(f"making the .torrent failed: {made.stderr.strip() or made.stdout}")
    go = run_dir / "go"
    first = hosts[0].addr(LT_PORT)
    downloads = []
    for host in hosts:
        out = run_dir / host.name
        argv = [LT_PYTHON, LT_CLIENT, "get", torrent, out, "--listen", host.addr(LT_PORT),
                "--go", go]
        if host is not hosts[0]:
            argv += ["--peer", first]
        downloads.append((host.popen(argv, "lt-get", env=env), out))
    procs = [p for p, _ in downloads]
    for proc in procs:
        wait_for_event(proc, "listening", 120)
    cpu = CpuSampler().start()
    sent0 = mirror_host.tx_bytes()
    sent0_peers = {h.name: h.tx_bytes() for h in hosts}
    t0 = time.monotonic()
    go.touch()
    watch = Watch(procs, "finished", t0)
    late = watch.wait(timeout)
    sent = mirror_host.tx_bytes() - sent0
    sent_peers = {h.name: h.tx_bytes() - sent0_peers[h.name] for h in hosts}
    load = cpu.stop()
    load["peers_cpu_s"] = round(sum(watch.cpu.values()), 1)
    stop_all(procs)
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    from_mirror = []
    for proc in procs:
        if proc.returncode != 0:
            problems.append(f"{proc.name} exited {proc.returncode}:\n{indent(proc.tail())}")
        stopped = json_events(proc, "stopped")
        if not stopped:
            problems.append(f"{proc.name} reported nothing when stopped:\n{indent(proc.tail())}")
            from_mirror.append(None)
            continue
        if stopped[-1].get("hash_failures"):
            problems.append(f"{proc.name}: {stopped[-1]['hash_failures']} pieces failed their "
                            "hash check")
        from_mirror.append(stopped[-1]["peers"].get(mirror_host.ip4, {}).get("down", 0))
    return {
        "tool": "libtorrent",
        "downloads": downloads,
        "done": watch.done_at,
        "done_at": [watch.done_at.get(p) for p in procs],
        "first_byte_at": [watch.first_byte_at.get(p) for p in procs],
        "last_bytes": [watch.last_bytes.get(p, 0) for p in procs],
        "from_seeder": from_mirror,
        "wasted": None,
        "sent": {"seeder": sent},
        "sent_peers": sent_peers,
        "cpu": load,
        "problems": problems,
    }


def mirror_cold_vs_libtorrent(ctx, name, peers, size, caps, runs=3, mirror_cap=UPLINK_SEED_CAP,
                              timeout=900):
    """`mirror_cold` with minimodel and with libtorrent and the mirror as
    its web seed, `runs` times each, the tools taking turns (each run in a
    lab of its own, built the same way): each run is reported as
    NAME:TOOL, and the scenario's own result puts the medians side by
    side: libtorrent's last peer over minimodel's
    (`libtorrent_over_minimodel`, above 1 when minimodel's last peer is
    done first) and the mirror's copies for minimodel over those for
    libtorrent (`mirror_copies_over_libtorrent`). libtorrent's web seed
    spreads widely from run to run (its last peer 1.7 to 3.5 T* in one
    hour), hence medians. Any run failing fails it."""
    results = {"minimodel": [], "libtorrent": []}
    problems = []
    for attempt in range(runs):
        order = ("minimodel", "libtorrent") if attempt % 2 == 0 else ("libtorrent", "minimodel")
        for tool in order:
            label = f"{name}:{tool}"
            folder = f"{name}-{tool}-{attempt + 1}"
            result, lines, failed = cold_start(ctx, folder, tool, peers, size, caps, mirror_cap,
                                               timeout)
            report(ctx, label, result, lines)
            shutil.rmtree(ctx.scratch(folder), ignore_errors=True)
            problems += [f"{tool}, run {attempt + 1} (logs: {ctx.logdir(folder)}): {line}"
                         for line in failed]
            results[tool].append(result)

    def medians(tool, key):
        values = [r[key] for r in results[tool]]
        return median(values) if None not in values else None

    last = {tool: medians(tool, "last_peer_s") for tool in results}
    copies = {tool: medians(tool, "mirror_copies") for tool in results}
    result = {
        "scenario": name, "run": ctx.attempt, "peers": peers, "bytes": size, "runs": runs,
        "minimodel_last_over_bound": [r["time_over_bound"] for r in results["minimodel"]],
        "libtorrent_last_over_bound": [r["time_over_bound"] for r in results["libtorrent"]],
        "minimodel_mirror_copies": [r["mirror_copies"] for r in results["minimodel"]],
        "libtorrent_mirror_copies": [r["mirror_copies"] for r in results["libtorrent"]],
        "libtorrent_over_minimodel": (round(last["libtorrent"] / last["minimodel"], 3)
                                      if last["minimodel"] and last["libtorrent"] else None),
        "mirror_copies_over_libtorrent": (round(copies["minimodel"] / copies["libtorrent"], 3)
                                          if copies["minimodel"] and copies["libtorrent"]
                                          else None),
        "ok": not problems,
    }
    ctx.results.append(result)
    for tool in results:
        say(f"  {tool}: last peer / T* "
            + ", ".join(str(r["time_over_bound"]) for r in results[tool])
            + "; the mirror's copies "
            + ", ".join(f"{r['mirror_copies']:.3f}" for r in results[tool]))
    say(f"  medians side by side: last peer minimodel {last['minimodel']} s, libtorrent "
        f"{last['libtorrent']} s (libtorrent / minimodel {result['libtorrent_over_minimodel']}); "
        f"the mirror's copies {copies['minimodel']} and {copies['libtorrent']} (minimodel / "
        f"libtorrent {result['mirror_copies_over_libtorrent']})")
    fail_if(problems)


def mirror_vs_seed(ctx, name, size, runs=3, timeout=300, server="mirrorhost"):
    """Two hosts on the flat LAN, no cap: host `s` runs the HTTPS mirror
    (`server`: lab/mirrorhost.py, or nginx as mirrors are served) and a
    `seed` of the same file; host `f` fetches the
    file from the mirror alone (`fetch --mirror URL`) and from the seed
    alone (`fetch --offer`), taking turns, `runs` times each, each fetch
    timed from its start to its exit and checked by `check_download`.
    Reported: each time, the medians and mirror / seed (the goal: within
    10 %)."""
    run_dir = ctx.scratch(name)
    slm, manifest, chunk_list, sha = mirrored_artifact(ctx, size)
    problems = []
    times = {"mirror": [], "seed": []}
    with ctx.lab(name) as lab:
        source = lab.add_host("s")
        fetcher = lab.add_host("f")
        lab.wait_reachable()
        if server == "nginx":
            server, url, ca = start_nginx(source, slm, run_dir / "tls")
        else:
            server, url, ca = start_mirror(source, slm, chunk_list, run_dir / "tls")
        seeder, offer = start_seeder(ctx, source, None, source.addr(PORT), name="seed",
                                     files=(manifest, slm))
        env = trusting(ca)
        # The file in the source's page cache for both.
        source.run(["dd", f"if={slm}", "of=/dev/null", "bs=1M", "status=none"], timeout=120)
        for i in range(runs):
            for how, given in (("mirror", ["--mirror", url]), ("seed", ["--offer", offer])):
                out = run_dir / f"{how}-{i}"
                fetcher.run(["sync"], timeout=120)
                start = time.monotonic()
                proc = fetcher.popen([ctx.bin, "--json", "fetch", manifest, *given, "-o", out,
                                      "--yes"], f"fetch-{how}", env=env)
                if wait_all([proc], timeout):
                    problems.append(f"{proc.name} did not finish in {timeout} s")
                    continue
                times[how].append(proc.ended - start)
                check_download(proc, out, sha, problems)
                shutil.rmtree(out, ignore_errors=True)
        seeder.stop()
        server.stop()
    medians = {how: median(t) if t else None for how, t in times.items()}
    ratio = (medians["mirror"] / medians["seed"]) if medians["mirror"] and medians["seed"] else None
    result = {
        "scenario": name,
        "bytes": size,
        "fetch_s": {how: [round(t, 3) for t in ts] for how, ts in times.items()},
        "median_s": {how: round(m, 3) if m else None for how, m in medians.items()},
        "mirror_over_seed": round(ratio, 3) if ratio else None,
        "ok": not problems,
        "run": ctx.attempt,
    }
    ctx.results.append(result)
    for how, ts in times.items():
        say(f"  from the {how}: " + ", ".join(f"{t:.3f}" for t in ts) + " s")
    if ratio:
        say(f"  medians: mirror {medians['mirror']:.3f} s, seed {medians['seed']:.3f} s; "
            f"mirror / seed {ratio:.3f}")
    shutil.rmtree(run_dir, ignore_errors=True)
    fail_if(problems)


SCENARIOS = {
    "mirror-cold-24x32": lambda c, n, tool="minimodel": mirror_cold(c, n, tool, 24, 32 * MiB,
                                                                   MIXED),
    "mirror-4x16": lambda c, n, tool="minimodel": mirror_cold(c, n, tool, 4, 16 * MiB, MIXED,
                                                             timeout=120),
    "mirror-cold-24x32-vs-libtorrent": lambda c, n: mirror_cold_vs_libtorrent(c, n, 24, 32 * MiB,
                                                                              MIXED),
    "mirror-cold-12x16-vs-libtorrent": lambda c, n: mirror_cold_vs_libtorrent(c, n, 12, 16 * MiB,
                                                                              MIXED, timeout=300),
    "mirror-vs-seed-256": lambda c, n: mirror_vs_seed(c, n, 256 * MiB),
    "mirror-vs-seed-256-nginx": lambda c, n: mirror_vs_seed(c, n, 256 * MiB, server="nginx"),
}

# Scenarios that run with `--tool libtorrent` (or NAME:libtorrent) too: the
# mirror is libtorrent's web seed.
LIBTORRENT = ["mirror-cold-24x32", "mirror-4x16"]
