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
    MODEL, MiB, PORT, CpuSampler, Failed, Watch, check_download, fail_if, indent, json_events,
    measure_uplink, median, say, start_seeder, stop_all, wait_all,
)
from internet import MIXED, UPLINK_SEED_CAP, report, summarize
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


def mirror_cold(ctx, name, peers, size, caps, mirror_cap=UPLINK_SEED_CAP, timeout=900):
    """One HTTPS mirror (lab/mirrorhost.py) on an internet host capped at
    `mirror_cap` and no seeder; `peers` peers at home uplinks `caps`
    (Mbit/s, in turn), each on a /24 of its own, downloads uncapped, each
    `fetch --serve --seed-after --mirror URL`. How they find each other:
    the first peer starts with the mirror alone, and every other one is
    given its offer as well (`--peer ID@ADDR`: the first downloader's
    ticket posted beside the mirror's URL); peer exchange does the rest.
    The clock starts when the first peer is started; the others start
    when it printed its offer (`others_started_s`). Asserted: every peer
    is done and exits 0 when stopped, its file hashed here to the
    fixture's SHA-256, a receipt that blames no peer and names the mirror,
    dropped by nobody. Reported: the mirror's copies (its interface's sent
    bytes over the file size), the last and the median peer over the
    heterogeneous bound counting the mirror as the seeder (as the
    `uplinks-*` scenarios: T* = max(F/u_s, N*F/(u_s + sum u_i)), u_s a TCP
    transfer through the mirror's cap), and the CPU's idle share."""
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
        server.stop()
    problems = [f"{p.name} was not done in {timeout} s" for p in late]
    receipts = [check_download(p, out, sha, problems) for p, out in fetches]
    from_mirror = []
    for proc, receipt in zip(procs, receipts):
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
    run = {
        "tool": "minimodel",
        "done_at": [watch.done_at.get(p) for p in procs],
        "first_byte_at": [watch.first_byte_at.get(p) for p in procs],
        "last_bytes": [watch.last_bytes.get(p, 0) for p in procs],
        "from_seeder": from_mirror,
        "wasted": [r["source"].get("bytes_wasted", 0) if r else None for r in receipts],
        "sent": {"seeder": sent},
        "cpu": load,
        "problems": problems,
    }
    payload_share = u_s / (mirror_host.cap_bits / 8)
    uplinks_sum = sum(payload_share * h.cap_bits / 8 for h in hosts)
    bound = max(size / u_s, peers * size / (u_s + uplinks_sum))
    result = summarize(run, size, bound, u_s)
    by_cap = {}
    for cap, t in zip(caps_mbit, run["done_at"]):
        by_cap.setdefault(cap, []).append(t)
    mirror_bytes = sum(b for b in from_mirror if b)
    result.update({
        "mirror_cap": mirror_host.cap,
        "others_started_s": round(others_at, 2),
        "peer_caps_mbit": sorted(set(caps_mbit)),
        "payload_share_of_cap": round(payload_share, 3),
        "mirror_copies": result["seeder_copies"],
        "mirror_bytes_in_receipts_copies": round(mirror_bytes / size, 3),
        "peers_sent_copies": round(sum(sent_peers.values()) / size, 3),
        "median_peer_s_by_cap": {str(c): round(median(v), 2) if None not in v else None
                                 for c, v in sorted(by_cap.items())},
        "mirror_requests": (json_events(server, "stopped") or [{}])[-1].get("requests"),
    })
    lines = [f"the mirror sent {result['mirror_copies']:.3f} copies (its interface); the "
             f"receipts count {result['mirror_bytes_in_receipts_copies']:.3f} copies from it; "
             f"the peers sent {result['peers_sent_copies']:.3f} copies",
             "median done by uplink (Mbit/s): "
             + ", ".join(f"{c}: {v}" for c, v in result["median_peer_s_by_cap"].items()),
             f"the mirror's answers by status: {result['mirror_requests']}",
             f"the first peer printed its offer, and the others were started, at "
             f"{others_at:.2f} s"]
    report(ctx, name, result, lines)
    shutil.rmtree(run_dir, ignore_errors=True)
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
    "mirror-cold-24x32": lambda c, n: mirror_cold(c, n, 24, 32 * MiB, MIXED),
    "mirror-4x16": lambda c, n: mirror_cold(c, n, 4, 16 * MiB, MIXED, timeout=120),
    "mirror-vs-seed-256": lambda c, n: mirror_vs_seed(c, n, 256 * MiB),
    "mirror-vs-seed-256-nginx": lambda c, n: mirror_vs_seed(c, n, 256 * MiB, server="nginx"),
}
