"""Usage: python3 scripts/dht-figures.py [WORKDIR]  (release binary, loopback only)

Time from `fetch` start to its first peer, its first progress event with
verified bytes (when the download lasts that long) and its exit: --dht (a
loopback DHT of one dht-node and three announcing seeders) against --offer.
docs/performance.md, "Discovery on the DHT"."""
import json, os, shutil, subprocess, sys, time

B = os.path.abspath(os.environ.get("MINIMODEL_BIN", "target/release/minimodel"))
D = sys.argv[1] if len(sys.argv) > 1 else "target/dht-figures"
os.makedirs(D, exist_ok=True)
os.chdir(D)

def spawn(args):
    return subprocess.Popen([B] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

def events_until(proc, pred, limit=60):
    out = []
    deadline = time.time() + limit
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            e = json.loads(line)
        except ValueError:
            continue
        out.append(e)
        if pred(e):
            return out
    raise SystemExit(f"timed out; saw {[e.get('event') for e in out]}")

if not os.path.exists("m.slm"):
    subprocess.run([B, "fixture", "m.slm", "--size", "64MiB", "--seed", "9", "-q"], check=True)
    subprocess.run([B, "manifest", "m.slm", "--model-id", "dht-fig", "--publisher-id", "acme",
                    "--license-route", "https://example.org/l", "--evidence-route", "https://example.org/e",
                    "-o", "m.manifest", "-q"], check=True)
node = spawn(["dht-node", "--listen", "127.0.0.1:0", "--json"])
ev = events_until(node, lambda e: e.get("event") == "dht-node")
boot = [e for e in ev if e.get("event") == "dht-node"][0]
boot = boot.get("addr") or boot.get("address") or boot.get("listen")
seeders = []
for i in range(3):
    s = spawn(["seed", "m.manifest", "m.slm", "--listen", "127.0.0.1:0", "--yes", "--json",
               "--dht", "--dht-bootstrap", boot, "--offer", f"o{i}.json"])
    events_until(s, lambda e: e.get("event") == "dht-announced")
    seeders.append(s)

def one(mode):
    shutil.rmtree("out", ignore_errors=True)
    args = ["fetch", "m.manifest", "-o", "out", "--yes", "--json"]
    args += ["--dht", "--dht-bootstrap", boot] if mode == "dht" else ["--offer", "o0.json"]
    t0 = time.monotonic()
    f = spawn(args)
    first_peer = first_bytes = None
    for line in f.stdout:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        t = time.monotonic() - t0
        if e.get("event") == "peer-connected" and first_peer is None:
            first_peer = t
        if e.get("event") == "progress" and first_bytes is None and e.get("verified_bytes", 0) > 0:
            first_bytes = t
    f.wait()
    return first_peer, first_bytes, time.monotonic() - t0, f.returncode

try:
    for r in range(3):
        for mode in ("offer", "dht"):
            p, b, total, rc = one(mode)
            first = f"first verified bytes {b:.3f} s, " if b is not None else ""
            print(f"{mode:5} run {r+1}: first peer {p:.3f} s, {first}done {total:.2f} s, exit {rc}",
                  flush=True)
finally:
    for s in seeders + [node]:
        s.terminate()
