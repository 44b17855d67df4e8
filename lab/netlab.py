"""Network-namespace primitives of the minimodel lab (docs/lab.md).

A Lab is N hosts, each a network namespace with one interface `eth0`,
joined by a bridge that lives in a namespace of its own. Each host has an
IPv4 address in 10.0.0.0/24 and, unless told otherwise, an IPv6 ULA address
in fd00:6d6d::/64; its uplink (the egress of its `eth0`) may be capped with
`tc tbf`. Processes started in a host are tracked.

Teardown: `Lab` is a context manager; leaving it (normally, by an exception,
or by SIGINT/SIGTERM/SIGHUP, which `install_signal_handlers` turns into
exceptions) stops every process it started (SIGTERM to its process group,
SIGKILL after 3 s, then SIGKILL to anything still inside its namespaces) and
deletes every namespace it created, which deletes their interfaces. A run
that was killed outright (SIGKILL) leaves namespaces named
`mmlab<PID>-...`; the next run deletes those whose PID is no longer a
running lab (`clean_leftovers`).

Anything the lab needs and cannot have (root, `ip`, `tc`, namespaces,
veth, bridge, tbf) raises LabError with the reason. Nothing is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "mmlab"
SUBNET4 = "10.0.0.{}"
SUBNET6 = "fd00:6d6d::{:x}"


class LabError(Exception):
    """The lab cannot run here (a missing capability) or could not be set up."""


def run(argv, timeout=30, check=True):
    """Runs a command, returns its CompletedProcess; a failure raises LabError
    naming the command and what it printed."""
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout
        )
    except FileNotFoundError as error:
        raise LabError(f"cannot run {argv[0]}: {error}") from error
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{' '.join(argv)}: no answer in {timeout} s") from error
    if check and done.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done


def require_capabilities():
    """Fails with the reason when the lab cannot run on this machine: it must
    be root, have `ip` and `tc`, and be able to make a namespace with a veth
    pair, a bridge and a tbf qdisc (checked by `check_kernel`)."""
    if os.geteuid() != 0:
        raise LabError(
            f"the lab needs root (network namespaces, veth, tc); running as uid {os.geteuid()}"
        )
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise LabError(f"`{tool}` is not installed (iproute2); the lab needs it")


def _namespaces():
    done = run(["ip", "netns", "list"])
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _lab_is_running(pid):
    """Whether `pid` is a live lab process (a python running lab code)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline and b"lab" in cmdline


def _kill_namespace_processes(ns):
    """SIGKILLs every process left inside namespace `ns` (all of them were
    started there by a lab run)."""
    done = run(["ip", "netns", "pids", ns], check=False)
    for word in done.stdout.split():
        try:
            os.kill(int(word), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


def _delete_namespace(ns):
    _kill_namespace_processes(ns)
    # A process may take a moment to die and release the namespace's
    # interfaces; `ip netns del` only unmounts the name, so this cannot hang.
    run(["ip", "netns", "del", ns], check=False)


def clean_leftovers(log=print):
    """Deletes namespaces of earlier lab runs that were killed before they
    could tear down (their PID no longer runs a lab)."""
    for ns in _namespaces():
        match = re.match(rf"{PREFIX}(\d+)-", ns)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _lab_is_running(pid):
            continue
        log(f"lab: removing namespace {ns} left by an earlier run (pid {pid})")
        _delete_namespace(ns)


def install_signal_handlers():
    """SIGINT raises KeyboardInterrupt (even when the lab was started with
    SIGINT ignored, as a background job of a script is), SIGTERM and SIGHUP
    raise SystemExit, so `with Lab(...)` blocks tear down on them."""

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


class Proc:
    """A process started in a host: its Popen, its log files, start and end
    times (time.monotonic)."""

    def __init__(self, name, popen, out, err, started):
        self.name = name
        self.popen = popen
        self.out = out
        self.err = err
        self.started = started
        self.ended = None

    @property
    def pid(self):
        return self.popen.pid

    def poll(self):
        code = self.popen.poll()
        if code is not None and self.ended is None:
            self.ended = time.monotonic()
        return code

    @property
    def returncode(self):
        return self.poll()

    def wait(self, timeout):
        """Waits up to `timeout` s; returns the exit code or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(0.01)
        return self.poll()

    def signal(self, signum):
        if self.poll() is None:
            try:
                os.killpg(self.popen.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after `grace` s."""
        if self.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        if self.wait(grace) is None:
            self.signal(signal.SIGKILL)
            self.wait(5)

    def stdout_text(self):
        return Path(self.out).read_text(errors="replace") if Path(self.out).exists() else ""

    def stderr_text(self):
        return Path(self.err).read_text(errors="replace") if Path(self.err).exists() else ""

    def tail(self, lines=12):
        """The end of its output, without the periodic progress lines of
        `minimodel --json` but the last one."""
        text = (self.stderr_text().strip() + "\n" + self.stdout_text().strip()).strip()
        kept = []
        for line in text.splitlines():
            if '"event":"progress"' in line or '"event":"serving"' in line:
                if kept and ('"event":"progress"' in kept[-1] or '"event":"serving"' in kept[-1]):
                    kept[-1] = line
                    continue
            kept.append(line)
        return "\n".join(kept[-lines:])


class Host:
    """One host: a namespace with `eth0`, its addresses and optional cap."""

    def __init__(self, lab, name, index, ns, ip4, ip6, cap):
        self.lab = lab
        self.name = name
        self.index = index
        self.ns = ns
        self.ip4 = ip4
        self.ip6 = ip6
        self.cap = cap
        self.ifname = "eth0"

    def __repr__(self):
        return f"Host({self.name}, {self.ip4 or self.ip6})"

    def addr(self, port, family=4):
        """`IP:PORT` (family 4) or `[IP]:PORT` (family 6)."""
        if family == 6:
            return f"[{self.ip6}]:{port}"
        return f"{self.ip4}:{port}"

    def exec_argv(self, argv):
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def run(self, argv, timeout=60, check=True):
        return run(self.exec_argv(argv), timeout=timeout, check=check)

    def popen(self, argv, name, env=None):
        """Starts `argv` in this host in a process group of its own, its
        output in the lab's log directory; the lab stops it at teardown."""
        return self.lab.start(self, argv, name, env)

    def tx_bytes(self):
        """Bytes sent by this host's interface, from its kernel counter."""
        done = self.run(["cat", f"/sys/class/net/{self.ifname}/statistics/tx_bytes"])
        return int(done.stdout.strip())


class Lab:
    """Hosts in namespaces on one bridge; see the module's documentation."""

    def __init__(self, logdir, log=print):
        self.tag = f"{PREFIX}{os.getpid()}-"
        self.logdir = Path(logdir)
        self.log = log
        self.hosts = []
        self.procs = []
        self.namespaces = []
        self.bridge_ns = None
        self._sequence = 0

    def __enter__(self):
        try:
            self._make_bridge()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _add_namespace(self, ns):
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _make_bridge(self):
        self.logdir.mkdir(parents=True, exist_ok=True)
        ns = self.tag + "br"
        try:
            self._add_namespace(ns)
        except LabError as error:
            raise LabError(f"cannot create a network namespace: {error}") from error
        self.bridge_ns = ns
        try:
            run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        except LabError as error:
            raise LabError(f"cannot create a bridge: {error}") from error
        run(["ip", "-n", ns, "link", "set", "br0", "up"])

    def add_host(self, name, cap=None, v4=True, v6=True, burst=None):
        """A new host `name` with `eth0` on the bridge. `cap` is a tbf rate
        for its uplink (like `100mbit`), None for none; `burst` defaults to
        256kb below 1gbit and 1mb from it. `v4`/`v6` choose its addresses."""
        index = len(self.hosts) + 2
        ns = f"{self.tag}{name}"
        self._add_namespace(ns)
        port = f"v{index}"
        try:
            run(
                ["ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns]
            )
        except LabError as error:
            raise LabError(f"cannot create a veth pair: {error}") from error
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up"])
        ip4 = SUBNET4.format(index) if v4 else None
        ip6 = SUBNET6.format(index) if v6 else None
        if ip4:
            run(["ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", "eth0"])
        if ip6:
            run(["ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"])
        if not v4 and not v6:
            raise LabError(f"host {name} needs an address")
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        host = Host(self, name, index, ns, ip4, ip6, cap)
        if cap:
            if burst is None:
                burst = "1mb" if _rate_bits(cap) >= 1e9 else "256kb"
            try:
                host.run(
                    ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", cap,
                     "burst", burst, "latency", "100ms"]
                )
            except LabError as error:
                raise LabError(f"cannot cap {name}'s uplink with tbf: {error}") from error
        self.hosts.append(host)
        return host

    def wait_reachable(self, timeout=10):
        """Waits until the first host reaches every other over IPv4 and IPv6
        where both have it: a TCP connection to a closed port must be refused
        (the refusal comes from the other host, so the path works)."""
        if len(self.hosts) < 2:
            return
        first = self.hosts[0]
        deadline = time.monotonic() + timeout
        probe = (
            "import socket,sys\n"
            "f=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
            "s=socket.socket(f);s.settimeout(1)\n"
            "sys.exit(0 if s.connect_ex((sys.argv[1],9))==111 else 1)\n"
        )
        for other in self.hosts[1:]:
            for mine, theirs in ((first.ip4, other.ip4), (first.ip6, other.ip6)):
                if not mine or not theirs:
                    continue
                while True:
                    done = first.run(["python3", "-c", probe, theirs], check=False)
                    if done.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"{other.name} ({theirs}) is not reachable from "
                            f"{first.name} over the bridge"
                        )
                    time.sleep(0.1)

    def start(self, host, argv, name, env=None):
        self._sequence += 1
        stem = self.logdir / f"{self._sequence:02d}-{host.name}-{name}"
        out, err = f"{stem}.out", f"{stem}.err"
        with open(out, "wb") as out_file, open(err, "wb") as err_file:
            popen = subprocess.Popen(
                host.exec_argv(argv),
                stdout=out_file,
                stderr=err_file,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        proc = Proc(f"{host.name}/{name}", popen, out, err, time.monotonic())
        self.procs.append(proc)
        return proc

    def teardown(self):
        """Stops every process and deletes every namespace this lab made.
        Runs to the end whatever fails, with SIGINT ignored meanwhile."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.signal(signal.SIGTERM)
            deadline = time.monotonic() + 3
            for proc in self.procs:
                proc.wait(max(0.0, deadline - time.monotonic()))
            for proc in self.procs:
                if proc.poll() is None:
                    proc.signal(signal.SIGKILL)
                    proc.wait(5)
            for ns in reversed(self.namespaces):
                _delete_namespace(ns)
            left = [ns for ns in _namespaces() if ns in self.namespaces]
            if left:
                self.log(f"lab: could not delete namespaces {left}")
            self.namespaces = []
        finally:
            signal.signal(signal.SIGINT, previous)


def _rate_bits(rate):
    """Bits per second of a tc rate like `100mbit`, `1gbit`."""
    match = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate.lower())
    if not match:
        raise LabError(f"rate {rate}: use tc's form, like 100mbit or 1gbit")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]
