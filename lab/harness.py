"""What the lab's scenarios share: the binaries, the run's context (work
directory, fixtures, options), and the steps a scenario is made of (start a
seeder or a fetch, measure an uplink, watch peers finish, check a download,
sample the CPU). See docs/lab.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netlab import Lab, LabError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BLAST = Path(__file__).resolve().parent / "blast.py"
LT_CLIENT = Path(__file__).resolve().parent / "ltclient.py"
TAMPER = Path(__file__).resolve().parent / "tamper.py"
# Debian's python3-libtorrent is built for Debian's own python3.
LT_PYTHON = os.environ.get("LAB_LT_PYTHON", "/usr/bin/python3")
MiB = 1 << 20
MODEL = "labmodel"
PORT = 4433
SEED_CAP = "100mbit"
PEER_CAP = "1gbit"



def chunk_size_of(manifest):
    """The `chunk-size` of a manifest file, in bytes."""
    for line in Path(manifest).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "chunk-size":
            return int(value)
    raise LabError(f"{manifest} names no chunk-size")

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


def build_of(binary):
    """Which build `binary` is, from its `--version`: "debug" for one with
    debug assertions (Cargo's dev and test profiles; CI's lab runs those),
    else "release". Every figure the lab reports carries it."""
    try:
        printed = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise LabError(f"{binary} --version failed: {error}") from error
    if not printed.startswith("minimodel "):
        raise LabError(f"{binary} --version printed {printed.strip()!r}, not minimodel's version")
    return "debug" if "(debug build)" in printed else "release"


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
    """One run of the lab: the binaries, the work directory, the fixtures
    made so far, the results, and the options every scenario sees
    (`rate_scale`, `peer_args`: extra `fetch` arguments for the peers of
    scenarios that take them, `seed_args`: extra `seed` arguments for
    their seeder, `libtorrent_peers`)."""

    def __init__(self, args, workdir):
        self.bin = find_minimodel(args.bin or os.environ.get("MINIMODEL_BIN"))
        self.build = build_of(self.bin)
        self.relay = Relay(args.relay or os.environ.get("LAB_RELAY"))
        self.workdir = Path(workdir)
        self.artifacts = {}
        self.torrents = {}
        self.results = []
        self.repeat = args.repeat
        self.attempt = 1
        self.rate_scale = getattr(args, "rate_scale", 1.0)
        self.peer_args = list(getattr(args, "peer_arg", None) or [])
        self.seed_args = list(getattr(args, "seed_arg", None) or [])
        self.chunk_size_arg = getattr(args, "chunk_size", None)
        self.libtorrent_peers = getattr(args, "libtorrent_peers", "all")

    def artifact(self, size):
        """A fixture of `size` bytes and its manifest, made once per run."""
        if size in self.artifacts:
            return self.artifacts[size]
        folder = self.workdir / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        slm = folder / f"{size}.slm"
        manifest = folder / f"{size}.manifest"
        # A --workdir used before holds them already: the fixture is the
        # same bytes, and the manifest is written over.
        subprocess.run(
            [self.bin, "fixture", slm, "--size", str(size), "--force"], check=True,
            stdout=subprocess.DEVNULL,
        )
        done = subprocess.run(
            [self.bin, "--json", "manifest", slm, "--model-id", MODEL, "--publisher-id", "lab",
             "--license-route", "https://example.org/license",
             "--evidence-route", "https://example.org/evidence", "-o", manifest]
            + (["--chunk-size", self.chunk_size_arg] if self.chunk_size_arg else []),
            check=True, stdout=subprocess.PIPE, text=True,
        )
        sha = json.loads(done.stdout.strip().splitlines()[-1])["artifact_sha256"]
        self.artifacts[size] = (slm, manifest, sha)
        return self.artifacts[size]

    def torrent(self, size):
        """The .torrent of the fixture of `size` bytes, made once per run with
        libtorrent's create_torrent, its pieces the size of the manifest's
        chunks (the same unit of trade for both tools)."""
        if size in self.torrents:
            return self.torrents[size]
        slm, manifest, _ = self.artifact(size)
        piece = chunk_size_of(manifest)
        torrent = slm.with_suffix(".torrent")
        done = subprocess.run([LT_PYTHON, LT_CLIENT, "make", slm, torrent, "--piece-size", str(piece)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise LabError(f"making the .torrent failed: {done.stderr.strip() or done.stdout}")
        self.torrents[size] = torrent
        return torrent

    def lab(self, name):
        return Lab(self.logdir(name), log=say, rate_scale=self.rate_scale)

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


def start_seeder(ctx, host, size, listen, extra=(), identity=None, name="seed", offer=None,
                 files=None):
    """Starts `minimodel seed` in `host` (the fixture of `size`, or `files`:
    (manifest, slm)); returns (process, offer path) once the offer is
    written."""
    if files:
        manifest, slm = files
    else:
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


def start_fetch(ctx, host, size, sources, out, serve=None, extra=(), name="fetch", wrap=()):
    """`minimodel --json fetch` of the fixture of `size` in `host`, run
    through the command `wrap` when given (lab/tamper.py)."""
    _, manifest, _ = ctx.artifact(size)
    argv = [ctx.bin, "--json", "fetch", manifest, *sources, "-o", out, "--yes"]
    if serve:
        argv += ["--serve", "--listen", serve]
    argv += list(extra)
    return host.popen([*wrap, *argv], name)


def start_relay(ctx, host, listen, upstream, extra=(), name="relay"):
    proc = host.popen([ctx.relay.path(), "--listen", listen, "--upstream", upstream, *extra], name)
    deadline = time.monotonic() + 10
    while "relay listening" not in proc.stdout_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"{proc.name} did not start:\n{proc.tail()}")
        time.sleep(0.02)
    return proc


def start_companion(ctx, host, lib, extra=()):
    """`companion run` on `lib` in `host` (its items on every interface, its
    keyring beside the library, `extra` arguments added); returns the
    process once its API answers."""
    argv = [ctx.bin, "--json", "companion", "run", "--library", lib, "--api", "127.0.0.1:0",
            "--serve-ip", "0.0.0.0", "--keyring", lib.parent / f"{lib.name}.keyring", *extra]
    proc = host.popen(argv, "companion")
    deadline = time.monotonic() + 30
    while not (lib / "api.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise Failed(f"the companion did not start:\n{indent(proc.tail())}")
        time.sleep(0.05)
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


def delivered_files(proc):
    """The files `proc` said it delivered: the `path` of each `delivered`
    and `fetched` event on its standard output (a fetch's `--json`)."""
    return list(dict.fromkeys(Path(e["path"]) for kind in ("delivered", "fetched")
                              for e in json_events(proc, kind) if e.get("path")))


def check_file(name, path, sha, problems):
    """`path` exists and its bytes hash to `sha`, read now by the lab."""
    if not path.is_file():
        problems.append(f"{name}: {path} is missing")
        return False
    digest = sha256_file(path)
    if digest != sha:
        problems.append(f"{name}: {path} has SHA-256 {digest}, not the artifact's {sha}")
        return False
    return True


def check_download(proc, out, sha, problems, model=MODEL):
    """Exit 0; every file the process said it delivered, and DIR's
    `<model>.slm`, hashed here to the artifact's SHA-256 (the lab reads the
    bytes itself: a receipt is what the program says, not proof); and a
    receipt for the right bytes that blames nobody. Appends what is wrong
    to `problems`; returns the receipt or None."""
    if proc.returncode != 0:
        problems.append(f"{proc.name} exited {proc.returncode}:\n{indent(proc.tail())}")
    said = delivered_files(proc)
    expected = Path(out) / f"{model}.slm"
    if proc.returncode == 0 and not said:
        problems.append(f"{proc.name} exited 0 without saying it delivered a file "
                        f"(no `delivered` or `fetched` event)")
    if said and expected.resolve() not in [p.resolve() for p in said]:
        problems.append(f"{proc.name} said it delivered {[str(p) for p in said]}, not {expected}")
    for path in dict.fromkeys([expected, *said]):
        check_file(proc.name, path, sha, problems)
    receipt_path = Path(out) / f"{model}.receipt.json"
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


def require_libtorrent():
    """Fails (LabError) when Debian's python3-libtorrent cannot be imported by
    LT_PYTHON."""
    done = subprocess.run([LT_PYTHON, "-c", "import libtorrent; print(libtorrent.__version__)"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise LabError(f"libtorrent cannot be imported by {LT_PYTHON} (Debian's "
                       f"python3-libtorrent; LAB_LT_PYTHON names another python): "
                       f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return done.stdout.strip()


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


class RateSampler:
    """A byte counter (a callable, say a host's `tx_bytes`) read every
    `every` seconds while a scenario runs; `peak(window)` is the most it
    grew in any `window` seconds, per second. A seeder capped below its
    link never shows its link's rate here, however the run's other figures
    hide it."""

    def __init__(self, meter, every=0.25):
        self.meter = meter
        self.every = every
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.samples.append((time.monotonic(), self.meter()))
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.every):
            self.samples.append((time.monotonic(), self.meter()))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self

    def peak(self, window=1.0):
        """Bytes per second over the best span of at least `window`
        seconds between two samples (None before such a span)."""
        best = None
        j = 0
        for t, count in self.samples:
            # The latest sample at least `window` before this one.
            while j + 1 < len(self.samples) and self.samples[j + 1][0] <= t - window:
                j += 1
            t0, count0 = self.samples[j]
            if t - t0 >= window:
                rate = (count - count0) / (t - t0)
                best = rate if best is None else max(best, rate)
        return best


class TxSeries:
    """Each host's interface byte counter (`tx_bytes`) every `every`
    seconds while a scenario runs, read inside the host's namespace by one
    bash loop per host that waits with `read -t` (no process per sample:
    an `ip netns exec cat` for each would load the machine the figures are
    taken on). `sent(name, a, b)` is what the host sent between `a` and
    `b` seconds after `t0`, from the samples nearest those times."""

    def __init__(self, hosts, t0, every=0.25):
        self.hosts = hosts
        self.t0 = t0
        self.every = every
        self.samples = {name: [] for name in hosts}
        self._procs = []
        self._threads = []
        # $EPOCHREALTIME is the wall clock; the scenarios' times are
        # time.monotonic()'s.
        self._offset = time.time() - time.monotonic()

    def start(self):
        for name, host in self.hosts.items():
            counter = f"/sys/class/net/{host.ifname}/statistics/tx_bytes"
            # A pipe nobody writes to: `read -t` on it is a wait in bash
            # itself ($EPOCHREALTIME needs bash 5; LC_ALL=C keeps its point).
            loop = ("exec 3<> <(:); "
                    f'while read -r v < {counter}; do echo "$EPOCHREALTIME $v"; '
                    f"read -r -t {self.every} -u 3 _; done")
            argv = host.exec_argv(["env", "LC_ALL=C", "bash", "-c", loop])
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, start_new_session=True)
            thread = threading.Thread(target=self._read, args=(name, proc), daemon=True)
            thread.start()
            self._procs.append(proc)
            self._threads.append(thread)
        return self

    def _read(self, name, proc):
        for line in proc.stdout:
            at, _, value = line.partition(" ")
            try:
                self.samples[name].append((float(at) - self._offset - self.t0, int(value)))
            except ValueError:
                continue

    def stop(self):
        for proc in self._procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        return self

    def count_at(self, name, at):
        """The counter at the sample nearest `at` s (None without one)."""
        samples = self.samples.get(name) or []
        if not samples:
            return None
        return min(samples, key=lambda sample: abs(sample[0] - at))[1]

    def sent(self, name, start, end):
        a, b = self.count_at(name, start), self.count_at(name, end)
        return None if a is None or b is None else b - a


class CpuSampler:
    """The whole machine's CPU while a scenario runs, from /proc/stat, over
    the run and per second, like `vmstat 1`: the idle share (`id` + `wa`),
    the share niced processes took (`ni`: other work on the machine running
    at a lower priority, which takes what the lab leaves), and the user and
    kernel (system, irq, softirq: the namespaces' packet path) shares."""

    def __init__(self):
        self.per_second = []
        self._first = None
        self._last = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _read():
        """(idle + iowait, nice, user, system + irq + softirq, all) jiffies."""
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return (fields[3] + fields[4], fields[1], fields[0], fields[2] + fields[5] + fields[6],
                sum(fields[:8]))

    def start(self):
        self._first = self._last = self._read()
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(1.0):
            now = self._read()
            self.per_second.append(_shares(self._last, now)[0])
            self._last = now

    def stop(self):
        """Stops sampling; returns the summary (shares in percent):
        `idle_pct` and `nice_pct` over the whole run, `idle_min_1s_pct`
        the least idle second, `seconds_below_5pct` seconds with less than
        5% idle, `seconds`."""
        self._stop.set()
        self._thread.join()
        idle, nice, user, kernel = _shares(self._first, self._read())
        return {
            "idle_pct": round(100 * idle, 1),
            "nice_pct": round(100 * nice, 1),
            "user_pct": round(100 * user, 1),
            "kernel_pct": round(100 * kernel, 1),
            "idle_min_1s_pct": round(100 * min(self.per_second), 1) if self.per_second else None,
            "seconds_below_5pct": sum(1 for idle in self.per_second if idle < 0.05),
            "seconds": len(self.per_second),
        }


def _shares(before, after):
    """(idle, nice, user, kernel) shares between two /proc/stat readings."""
    total = after[-1] - before[-1]
    if total <= 0:
        return 0.0, 0.0, 0.0, 0.0
    return tuple((a - b) / total for a, b in zip(after[:-1], before[:-1]))


class Watch:
    """Follows the JSON lines of several processes as they run: when each
    printed `done_event` (or exited 0, when `exit_is_done`), when it first
    reported a verified byte, and the verified bytes it reported last
    (`progress` events: minimodel's `verified_bytes`, the libtorrent
    client's `bytes`), and the CPU seconds each took (read at every poll
    until it is reaped: the last reading of one that exited is at most one
    poll old). Times are seconds from `t0` (time.monotonic)."""

    def __init__(self, procs, done_event, t0, exit_is_done=False):
        self.procs = procs
        self.done_event = done_event
        self.exit_is_done = exit_is_done
        self.t0 = t0
        self.done_at = {}
        self.first_byte_at = {}
        self.last_bytes = {}
        # Every progress reading: proc -> [(seconds from t0, verified bytes)].
        self.timeline = {p: [] for p in procs}
        self.cpu = {}
        self._offsets = {p: 0 for p in procs}
        self._partial = {p: "" for p in procs}

    def poll(self):
        now = time.monotonic() - self.t0
        for proc in self.procs:
            if proc.ended is None:
                seconds = cpu_seconds(proc)
                if seconds is not None:
                    self.cpu[proc] = seconds
            code = proc.poll()
            self._read(proc, now)
            if code == 0 and self.exit_is_done and proc not in self.done_at:
                self.done_at[proc] = proc.ended - self.t0

    def _read(self, proc, now):
        try:
            with open(proc.out, "rb") as out:
                out.seek(self._offsets[proc])
                data = out.read()
        except OSError:
            return
        self._offsets[proc] += len(data)
        text = self._partial[proc] + data.decode(errors="replace")
        lines = text.split("\n")
        self._partial[proc] = lines.pop()
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == self.done_event and proc not in self.done_at:
                self.done_at[proc] = now
            elif kind == "progress":
                verified = event.get("verified_bytes", event.get("bytes", 0))
                self.last_bytes[proc] = verified
                self.timeline[proc].append((now, verified))
                if verified and proc not in self.first_byte_at:
                    self.first_byte_at[proc] = now

    def crowd_timeline(self, size, step=2.0):
        """The files' worth verified over the whole crowd by every `step`
        seconds from t0 (a done process counts whole), until every process
        is done or gave its last reading: the lab's side of the simulator's
        "verified over time"."""
        # Until every process is done, or the last reading of one that
        # never was.
        readings = [t for line in self.timeline.values() for t, _ in line]
        end = max(list(self.done_at.values()) + readings, default=None)
        if end is None:
            return []
        out = []
        at = step
        while True:
            total = 0
            for proc in self.procs:
                done = self.done_at.get(proc)
                if done is not None and done <= at:
                    total += size
                    continue
                seen = [b for t, b in self.timeline[proc] if t <= at]
                total += seen[-1] if seen else 0
            out.append((at, total / size))
            if at >= end:
                return out
            at += step

    def wait(self, timeout):
        """Polls until every process is done or has exited, or `timeout` s
        from t0; returns the processes neither done nor exited."""
        deadline = self.t0 + timeout
        while True:
            self.poll()
            open_ = [p for p in self.procs if p not in self.done_at and p.poll() is None]
            if not open_ or time.monotonic() > deadline:
                return open_
            time.sleep(0.05)


def cpu_seconds(proc):
    """User + system CPU seconds a process not yet reaped took so far (its
    own threads; the kernel's packet path is not in it), from
    /proc/PID/stat, or None. `ip netns exec` execs the program, so the pid
    is the program's."""
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_all(procs, grace=10.0):
    """SIGTERM to every process at once, then waits for each (SIGKILL after
    `grace` s)."""
    for proc in procs:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        if proc.wait(max(0.0, deadline - time.monotonic())) is None:
            proc.signal(signal.SIGKILL)
            proc.wait(5)


def json_events(proc, kind):
    """The JSON lines of `proc`'s standard output whose `event` is `kind`."""
    found = []
    for line in proc.stdout_text().splitlines():
        if line.startswith("{") and f'"{kind}"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == kind:
                found.append(event)
    return found


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while True:
            block = data.read(1 << 20)
            if not block:
                return digest.hexdigest()
            digest.update(block)
