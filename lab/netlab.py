"""Network-namespace primitives of the minimodel lab (docs/lab.md).

Two kinds of hosts, each a network namespace with one interface `eth0`,
can be made in one Lab:

- On the flat LAN (`add_host`): joined by a bridge that lives in the middle
  namespace, each with an IPv4 address in 10.0.0.0/24 and, unless told
  otherwise, an IPv6 ULA address in fd00:6d6d::/64. One /24: to minimodel's
  admission and peer-exchange rules, one network (a campus).
- On the internet (`add_internet_host`, `add_campus`, `add_home`): the
  middle namespace routes between sites, each a /24 of its own
  (10.1.K.0/24 for site K, the middle namespace at .1). A site is one host
  (at .2), a campus (several hosts on a bridge behind one /24), or a home:
  a router namespace whose WAN interface has .2 and whose LAN (a bridge,
  192.168.1.0/24) holds one or more hosts, masqueraded by nftables (a
  port-restricted cone with `masquerade`, symmetric with `masquerade
  random`; like a home router's firewall, it rejects what comes in on its
  WAN unasked, so an unsolicited datagram leaves no connection-tracking
  state that would take a port away from its LAN hosts' mappings),
  optionally with miniupnpd answering UPnP IGD, NAT-PMP and PCP
  on the LAN (`Home.start_upnp`, which needs a STUN server:
  `add_stun_server`, coturn). IPv4 only.

A host's uplink (the egress of its `eth0`, or of a home router's `wan`)
may be capped with `tc tbf`; every cap is multiplied by the lab's
`rate_scale`. Processes started in a host are tracked.

Teardown: `Lab` is a context manager; leaving it (normally, by an exception,
or by SIGINT/SIGTERM/SIGHUP, which `install_signal_handlers` turns into
exceptions) stops every process it started (SIGTERM to its process group,
SIGKILL after 3 s, then SIGKILL to anything still inside its namespaces:
miniupnpd and coturn too) and deletes every namespace it created, which
deletes their interfaces and nftables rules, and puts back the host's
neighbour-table limits it raised (see `Lab._raise_neighbour_limits`). A
run that was killed outright (SIGKILL) leaves namespaces named
`mmlab<PID>-...`; the next run deletes those whose PID is no longer a
running lab (`clean_leftovers`).

Anything the lab needs and cannot have (root, `ip`, `tc`, namespaces,
veth, bridge, tbf; `nft` for homes; miniupnpd and turnserver for a UPnP
home) raises LabError with the reason. Nothing is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

PREFIX = "mmlab"
SUBNET4 = "10.0.0.{}"
SUBNET6 = "fd00:6d6d::{:x}"
# Every home's LAN (each home is a network of its own, as at home).
HOME_LAN4 = "192.168.1.{}"
# A LAN host's uplink unless told otherwise.
LAN_CAP = "1gbit"
STUN_PORT = 3478
# miniupnpd's UPnP HTTP port on the LAN.
UPNP_HTTP_PORT = 5000
PROBE = Path(__file__).resolve().parent / "udpprobe.py"


class LabError(Exception):
    """The lab cannot run here (a missing capability) or could not be set up."""


def run(argv, timeout=30, check=True, input_text=None):
    """Runs a command (with `input_text` on its standard input), returns its
    CompletedProcess; a failure raises LabError naming the command and what
    it printed."""
    argv = [str(arg) for arg in argv]
    try:
        done = subprocess.run(
            argv, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=timeout, stdin=None if input_text is not None else subprocess.DEVNULL,
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


def _lab_pid(ns):
    """The PID of the lab that made namespace `ns`, None if no lab did."""
    match = re.match(rf"{PREFIX}(\d+)-", ns)
    return None if match is None else int(match.group(1))


def clean_leftovers(log=print):
    """Deletes namespaces of earlier lab runs that were killed before they
    could tear down (their PID no longer runs a lab)."""
    for ns in _namespaces():
        pid = _lab_pid(ns)
        if pid is None or pid == os.getpid() or _lab_is_running(pid):
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
    """One host: a namespace with `eth0` (a home router: `wan`), its
    addresses and optional cap. `cap` is the tbf rate as applied (after the
    lab's rate scale), `cap_bits` the same in bits per second, `site` the
    internet site it is on (None on the flat LAN), `home` the Home whose LAN
    it is on (None elsewhere)."""

    def __init__(self, lab, name, index, ns, ip4, ip6, cap, ifname="eth0"):
        self.lab = lab
        self.name = name
        self.index = index
        self.ns = ns
        self.ip4 = ip4
        self.ip6 = ip6
        self.cap = cap
        self.cap_bits = _rate_bits(cap) if cap else None
        self.ifname = ifname
        self.site = None
        self.home = None
        self.extra_ip4 = []

    def __repr__(self):
        return f"Host({self.name}, {self.ip4 or self.ip6})"

    def addr(self, port, family=4):
        """`IP:PORT` (family 4) or `[IP]:PORT` (family 6)."""
        if family == 6:
            return f"[{self.ip6}]:{port}"
        return f"{self.ip4}:{port}"

    def exec_argv(self, argv):
        return ["ip", "netns", "exec", self.ns, *map(str, argv)]

    def run(self, argv, timeout=60, check=True, input_text=None):
        return run(self.exec_argv(argv), timeout=timeout, check=check, input_text=input_text)

    def popen(self, argv, name, env=None):
        """Starts `argv` in this host in a process group of its own, its
        output in the lab's log directory; the lab stops it at teardown."""
        return self.lab.start(self, argv, name, env)

    def tx_bytes(self):
        """Bytes sent by this host's interface, from its kernel counter."""
        return self._counter("tx_bytes")

    def rx_bytes(self):
        """Bytes received by this host's interface, from its kernel counter."""
        return self._counter("rx_bytes")

    def _counter(self, name):
        done = self.run(["cat", f"/sys/class/net/{self.ifname}/statistics/{name}"])
        return int(done.stdout.strip())


class Lab:
    """Hosts in namespaces, on the flat LAN or on the internet; see the
    module's documentation."""

    def __init__(self, logdir, log=print, rate_scale=1.0):
        self.tag = f"{PREFIX}{os.getpid()}-"
        self.logdir = Path(logdir)
        self.log = log
        self.rate_scale = rate_scale
        self.hosts = []  # every host that runs programs (routers are not among them)
        self.flat = []  # hosts on the flat LAN
        self.internet = []  # hosts with an internet address (own site or campus)
        self.homes = []
        self.procs = []
        self.namespaces = []
        self.bridge_ns = None
        self.sites = 0
        self._routing = False
        self._sequence = 0
        self.internet6 = False
        self.carriers = []

    def __enter__(self):
        try:
            self._raise_neighbour_limits()
            self._make_bridge()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _raise_neighbour_limits(self):
        """The kernel's neighbour (ARP and NDP) tables are one per host,
        shared by every namespace: at the default limit (1024 entries) a
        campus of 40 hosts that all talk to each other overflows them, and
        the kernel drops what it cannot resolve ("neighbor table overflow"
        in its log; dials time out for no reason a real campus has, where
        each host keeps its own table). Raised for the lab's run, put back
        by `teardown` unless something else changed them meanwhile or
        another lab is still running. A host without IPv6 has no IPv6
        table to raise."""
        self._neighbour_limits = []
        for family in ("ipv4", "ipv6"):
            for n, wanted in ((1, 4096), (2, 8192), (3, 16384)):
                path = Path(f"/proc/sys/net/{family}/neigh/default/gc_thresh{n}")
                if family == "ipv6" and not path.exists():
                    continue
                try:
                    before = int(path.read_text())
                    if before < wanted:
                        path.write_text(f"{wanted}\n")
                        self._neighbour_limits.append((path, before, wanted))
                except (OSError, ValueError) as error:
                    raise LabError(f"cannot raise the neighbour table's limit {path}: {error}") \
                        from error

    def _restore_neighbour_limits(self):
        limits = getattr(self, "_neighbour_limits", [])
        self._neighbour_limits = []
        try:
            others = any(
                (pid := _lab_pid(ns)) is not None and pid != os.getpid()
                and _lab_is_running(pid)
                for ns in _namespaces())
        except LabError:
            others = False
        if others:
            # Another lab still needs them (it found them raised and will
            # not put them back: they stay raised, as after a killed run).
            return
        for path, before, wanted in reversed(limits):
            try:
                if int(path.read_text()) == wanted:
                    path.write_text(f"{before}\n")
            except (OSError, ValueError) as error:
                self.log(f"lab: could not put {path} back to {before}: {error}")

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

    def _host_namespace(self, name):
        ns = f"{self.tag}{name}"
        if ns in self.namespaces:
            raise LabError(f"two hosts named {name}")
        self._add_namespace(ns)
        return ns

    def _veth(self, ns, ifname, peer_ns, peer_ifname, what):
        """A veth pair: `ifname` in `ns`, `peer_ifname` in `peer_ns`."""
        try:
            run(["ip", "-n", ns, "link", "add", ifname, "type", "veth",
                 "peer", "name", peer_ifname, "netns", peer_ns])
        except LabError as error:
            raise LabError(f"cannot create a veth pair for {what}: {error}") from error

    def scaled(self, rate):
        """The tc rate of `rate` times the lab's rate scale."""
        if self.rate_scale == 1:
            return rate
        return f"{max(1, round(_rate_bits(rate) * self.rate_scale / 1000))}kbit"

    def _cap(self, host, cap, burst):
        """Caps `host`'s uplink (the egress of its interface) at `cap` times
        the rate scale: `tc tbf`, burst `burst` (default 256kb below 1gbit,
        1mb from it), latency 100ms."""
        rate = self.scaled(cap)
        if burst is None:
            burst = "1mb" if _rate_bits(rate) >= 1e9 else "256kb"
        try:
            host.run(["tc", "qdisc", "add", "dev", host.ifname, "root", "tbf", "rate", rate,
                      "burst", burst, "latency", "100ms"])
        except LabError as error:
            raise LabError(f"cannot cap {host.name}'s uplink with tbf: {error}") from error
        host.cap = rate
        host.cap_bits = _rate_bits(rate)

    def add_host(self, name, cap=None, v4=True, v6=True, burst=None):
        """A new host `name` on the flat LAN, `eth0` on the bridge. `cap` is a
        tbf rate for its uplink (like `100mbit`), None for none; `burst`
        defaults to 256kb below 1gbit and 1mb from it. `v4`/`v6` choose its
        addresses."""
        index = len(self.flat) + 2
        ns = self._host_namespace(name)
        port = f"v{index}"
        self._veth(self.bridge_ns, port, ns, "eth0", name)
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
        host = Host(self, name, index, ns, ip4, ip6, None)
        if cap:
            self._cap(host, cap, burst)
        self.hosts.append(host)
        self.flat.append(host)
        return host

    # --- the internet: sites routed by the middle namespace ------------------

    def _new_site(self):
        """The next site K and its /24 prefix (`10.A.B`); the middle namespace
        routes from the first one on."""
        if not self._routing:
            run(["ip", "netns", "exec", self.bridge_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self._routing = True
        self.sites += 1
        if self.sites > 254 * 200:
            raise LabError("too many internet sites")
        return self.sites, site_prefix(self.sites)

    def enable_internet6(self):
        """Gives every internet site made from now on an IPv6 /64 besides
        its IPv4 /24 (`site6_prefix`), routed by the middle namespace: the
        site's namespace has `::2`, the middle one `::1`. Homes made with
        `v6=True` get a routed /64 of their own for their LAN, behind their
        router's stateful firewall, no NAT (a home with a global IPv6
        prefix)."""
        if self.sites:
            raise LabError("enable_internet6 comes before the first site")
        # (`default`: the site links made later forward too.)
        for conf in ("all", "default"):
            run(["ip", "netns", "exec", self.bridge_ns, "sysctl", "-qw",
                 f"net.ipv6.conf.{conf}.forwarding=1"])
        self.internet6 = True

    def _attach_site(self, k, prefix, ns, ifname, what):
        """Links namespace `ns` (interface `ifname`, address PREFIX.2) to the
        middle namespace (interface `iK`, PREFIX.1), its default route there;
        with `enable_internet6`, the same over IPv6 (PREFIX6::2, ::1).
        Returns the namespace's IPv6 address, or None."""
        link = f"i{k}"
        self._veth(self.bridge_ns, link, ns, ifname, what)
        run(["ip", "-n", self.bridge_ns, "addr", "add", f"{prefix}.1/24", "dev", link])
        run(["ip", "-n", self.bridge_ns, "link", "set", link, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{prefix}.2/24", "dev", ifname])
        run(["ip", "-n", ns, "link", "set", ifname, "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", f"{prefix}.1"])
        if not self.internet6:
            return None
        prefix6 = site6_prefix(k)
        run(["ip", "-n", self.bridge_ns, "addr", "add", f"{prefix6}::1/64", "dev", link, "nodad"])
        run(["ip", "-n", ns, "addr", "add", f"{prefix6}::2/64", "dev", ifname, "nodad"])
        run(["ip", "-n", ns, "-6", "route", "add", "default", "via", f"{prefix6}::1"])
        return f"{prefix6}::2"

    def add_internet_host(self, name, cap=None, burst=None, addresses=1):
        """A host on a site of its own: `eth0` with PREFIX.2/24 (and PREFIX.3,
        ... with `addresses` > 1), its default route to the middle namespace.
        `cap` and `burst` as in `add_host`."""
        k, prefix = self._new_site()
        ns = self._host_namespace(name)
        ip6 = self._attach_site(k, prefix, ns, "eth0", name)
        extra = [f"{prefix}.{3 + i}" for i in range(addresses - 1)]
        for ip in extra:
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        host = Host(self, name, k, ns, f"{prefix}.2", ip6, None)
        host.site = k
        host.extra_ip4 = extra
        if cap:
            self._cap(host, cap, burst)
        self.hosts.append(host)
        self.internet.append(host)
        return host

    def add_campus(self, name):
        """A site whose /24 is a bridge `cK` in the middle namespace (PREFIX.1
        on it): hosts added with `Campus.add_host` share one /24."""
        k, prefix = self._new_site()
        bridge = f"c{k}"
        run(["ip", "-n", self.bridge_ns, "link", "add", bridge, "type", "bridge"])
        run(["ip", "-n", self.bridge_ns, "addr", "add", f"{prefix}.1/24", "dev", bridge])
        run(["ip", "-n", self.bridge_ns, "link", "set", bridge, "up"])
        return Campus(self, name, k, prefix, bridge)

    def add_home(self, name, nat="cone", cap=None, burst=None, firewall=True, v6=False,
                 carrier=None):
        """A home on a site of its own: a router namespace `name` with `wan`
        (PREFIX.2/24) and a LAN bridge `lan` (192.168.1.1/24), forwarding
        and masquerading the LAN with nftables (`nat`: `cone` for
        `masquerade`, `symmetric` for `masquerade random`); its forward
        policy drops what is neither from the LAN nor part of a connection
        the LAN started (or mapped, with `Home.start_upnp`). `cap` caps the
        home's uplink (the egress of `wan`). `firewall`: its input chain
        rejects what comes in on `wan` unasked (see `INPUT_FIREWALL`);
        false: it accepts it (`INPUT_OPEN`). `v6` (with
        `enable_internet6`): its LAN has a routed /64 too (PREFIX6:1::/64,
        the router at ::1), forwarded through the same stateful firewall,
        not translated. `carrier` (a Carrier, `add_carrier`): the router's
        `wan` is on the carrier's LAN instead of a site of its own, behind
        the carrier's NAT (two layers)."""
        if nat not in NAT_RULES:
            raise LabError(f"unknown NAT {nat!r}; use one of {sorted(NAT_RULES)}")
        if tool_path("nft") is None:
            raise LabError("`nft` (Debian's nftables) is not installed; a home's router needs it")
        if v6 and (carrier is not None or not self.internet6):
            raise LabError("an IPv6 home needs enable_internet6 and a site of its own")
        ns = self._host_namespace(name)
        ip6 = None
        if carrier is None:
            k, prefix = self._new_site()
            ip6 = self._attach_site(k, prefix, ns, "wan", f"home {name}")
            wan_ip = f"{prefix}.2"
        else:
            k, wan_ip = carrier.attach(ns, name)
        try:
            run(["ip", "-n", ns, "link", "add", "lan", "type", "bridge"])
        except LabError as error:
            raise LabError(f"cannot create a bridge: {error}") from error
        run(["ip", "-n", ns, "addr", "add", f"{HOME_LAN4.format(1)}/24", "dev", "lan"])
        run(["ip", "-n", ns, "link", "set", "lan", "up"])
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        router = Host(self, name, k, ns, wan_ip, ip6, None, ifname="wan")
        router.site = k
        home = Home(self, name, router, nat, firewall=firewall)
        home.carrier = carrier
        if v6:
            lan6 = f"{site6_prefix(k)}:1"
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
            run(["ip", "-n", ns, "addr", "add", f"{lan6}::1/64", "dev", "lan", "nodad"])
            run(["ip", "-n", self.bridge_ns, "-6", "route", "add", f"{lan6}::/64",
                 "via", ip6.rsplit("::", 1)[0] + "::2"])
            home.lan6 = lan6
        try:
            router.run([tool_path("nft"), "-f", "-"], input_text=home.ruleset_text())
        except LabError as error:
            raise LabError(f"cannot set up {name}'s NAT with nftables: {error}") from error
        if cap:
            self._cap(router, cap, burst)
        self.homes.append(home)
        return home

    def add_carrier(self, name, nat="cone", cap=None, burst=None):
        """A carrier's NAT on a site of its own (its `wan` at PREFIX.2), with
        a LAN of home routers behind it (100.64.C.0/24, the shared address
        space of RFC 6598, C counted from 1 per carrier; the carrier at .1):
        homes made with `add_home(..., carrier=this)` sit behind two NATs.
        Its router is a home router's (`nat`, masquerade of its LAN, the
        input firewall; no UPnP): it keeps no state of what comes in
        unasked. Returns the Carrier."""
        if nat not in NAT_RULES:
            raise LabError(f"unknown NAT {nat!r}; use one of {sorted(NAT_RULES)}")
        if tool_path("nft") is None:
            raise LabError("`nft` (Debian's nftables) is not installed; a carrier's NAT needs it")
        k, prefix = self._new_site()
        ns = self._host_namespace(name)
        self._attach_site(k, prefix, ns, "wan", f"carrier {name}")
        index = len(self.carriers) + 1
        lan = f"100.64.{index}"
        run(["ip", "-n", ns, "link", "add", "lan", "type", "bridge"])
        run(["ip", "-n", ns, "addr", "add", f"{lan}.1/24", "dev", "lan"])
        run(["ip", "-n", ns, "link", "set", "lan", "up"])
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        router = Host(self, name, k, ns, f"{prefix}.2", None, None, ifname="wan")
        router.site = k
        carrier = Carrier(self, name, router, nat, lan)
        router.run([tool_path("nft"), "-f", "-"], input_text=carrier.ruleset_text())
        if cap:
            self._cap(router, cap, burst)
        self.carriers.append(carrier)
        return carrier

    def add_stun_server(self, name="stun", port=STUN_PORT):
        """An internet host with two addresses running coturn's
        `turnserver --stun-only` on both (a STUN server that can answer from
        another address and port, as RFC 5780 asks, which miniupnpd's NAT
        check needs). Returns the host once both addresses answer a STUN
        binding request."""
        turnserver = tool_path("turnserver")
        if turnserver is None:
            raise LabError("`turnserver` (Debian's coturn) is not installed; a UPnP home needs "
                           "a STUN server")
        host = self.add_internet_host(name, addresses=2)
        addrs = [host.ip4, *host.extra_ip4]
        argv = [turnserver, "--stun-only", "-n", "--no-cli", "--no-tls", "--no-dtls",
                "--listening-port", str(port), "--log-file", "stdout", "--simple-log",
                "--pidfile", self.logdir / f"{name}-turnserver.pid"]
        for addr in addrs:
            argv += ["--listening-ip", addr]
        proc = host.popen(argv, "turnserver")
        deadline = time.monotonic() + 15
        for addr in addrs:
            while True:
                done = host.run(["python3", PROBE, "stun", addr, port], check=False)
                if done.returncode == 0:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise LabError(f"the STUN server on {name} does not answer at {addr}:{port}:\n"
                                   f"{proc.tail()}\n{done.stdout}{done.stderr}")
                time.sleep(0.2)
        host.stun = (host.ip4, port)
        return host

    def public_hosts(self):
        """Every namespace with an internet address: internet and campus
        hosts, home routers with a site of their own, carriers' routers."""
        return [*self.internet,
                *(home.router for home in self.homes if home.carrier is None),
                *(carrier.router for carrier in self.carriers)]

    def wait_reachable(self, timeout=10):
        """Waits until the paths work: on the flat LAN, the first host reaches
        every other over IPv4 and IPv6 where both have it; on the internet,
        the first public host reaches every other public one (home routers
        included); every host in a home reaches the first public host
        (through its NAT), or its router when there is none. A TCP connection
        to a closed port must be refused (the refusal comes from the other
        side, so the path works)."""
        deadline = time.monotonic() + timeout
        pairs = []
        if len(self.flat) >= 2:
            first = self.flat[0]
            for other in self.flat[1:]:
                for mine, theirs in ((first.ip4, other.ip4), (first.ip6, other.ip6)):
                    if mine and theirs:
                        pairs.append((first, theirs, other.name))
        public = self.public_hosts()
        if len(public) >= 2:
            for other in public[1:]:
                pairs.append((public[0], other.ip4, other.name))
        for home in self.homes:
            for host in home.hosts:
                if public:
                    pairs.append((host, public[0].ip4, public[0].name))
                else:
                    pairs.append((host, HOME_LAN4.format(1), home.name))
                if host.ip6 and public and public[0].ip6:
                    pairs.append((host, public[0].ip6, public[0].name))
        if self.internet6 and len(public) >= 2:
            for other in public[1:]:
                if other.ip6:
                    pairs.append((public[0], other.ip6, other.name))
        for source, target, target_name in pairs:
            while True:
                done = source.run(["python3", "-c", REFUSED_PROBE, target], check=False)
                if done.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise LabError(f"{target_name} ({target}) is not reachable from {source.name}")
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
            self._restore_neighbour_limits()
            signal.signal(signal.SIGINT, previous)


class Campus:
    """Hosts on one bridge behind one /24 of the internet (see
    `Lab.add_campus`): PREFIX.2, PREFIX.3, ... in the order they are made."""

    def __init__(self, lab, name, site, prefix, bridge):
        self.lab = lab
        self.name = name
        self.site = site
        self.prefix = prefix
        self.bridge = bridge
        self.hosts = []

    def add_host(self, name, cap=None, burst=None):
        lab = self.lab
        j = len(self.hosts) + 1
        if j > 252:
            raise LabError(f"campus {self.name} is full")
        ns = lab._host_namespace(name)
        port = f"c{self.site}h{j}"
        lab._veth(lab.bridge_ns, port, ns, "eth0", name)
        run(["ip", "-n", lab.bridge_ns, "link", "set", port, "master", self.bridge, "up"])
        ip = f"{self.prefix}.{j + 1}"
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", f"{self.prefix}.1"])
        host = Host(lab, name, j, ns, ip, None, None)
        host.site = self.site
        if cap:
            lab._cap(host, cap, burst)
        lab.hosts.append(host)
        lab.internet.append(host)
        self.hosts.append(host)
        return host


class Home:
    """A home: its router (a Host whose interface is `wan`, the home's
    internet address) and the hosts on its LAN (see `Lab.add_home`)."""

    lan_prefix = HOME_LAN4.format(0)

    def __init__(self, lab, name, router, nat, firewall=True):
        self.lab = lab
        self.name = name
        self.router = router
        self.nat = nat
        self.firewall = firewall
        self.hosts = []
        self.upnp = None
        self.carrier = None
        self.lan6 = None

    def __repr__(self):
        return (f"Home({self.name}, {self.router.ip4}, {self.nat}"
                f"{'' if self.firewall else ', no input firewall'}"
                f"{f', behind {self.carrier.name}' if self.carrier else ''}"
                f"{', IPv6' if self.lan6 else ''})")

    @property
    def wan_ip(self):
        return self.router.ip4

    def ruleset_text(self):
        """The router's nftables ruleset: one `inet filter` table whose
        chains are the ones miniupnpd's nftables backend adds its rules to
        (`miniupnpd`, `prerouting_miniupnpd`, `postrouting_miniupnpd`), empty
        unless miniupnpd runs."""
        # Only the LAN's packets are translated: the router's own (the STUN
        # check of miniupnpd) leave from its WAN address and port as they
        # are, as on a router whose WAN address is public.
        return NAT_TABLE.format(masquerade=NAT_RULES[self.nat], lan=self.lan_prefix,
                                input=INPUT_FIREWALL if self.firewall else INPUT_OPEN)

    def add_host(self, name, cap=LAN_CAP, burst=None):
        """A host on the LAN: `eth0` with 192.168.1.N/24 (N from 2), its
        default route to the router; its uplink capped at `cap` (1 Gbit
        unless told otherwise, times the rate scale)."""
        lab = self.lab
        j = len(self.hosts) + 2
        if j > 254:
            raise LabError(f"home {self.name}'s LAN is full")
        ns = lab._host_namespace(name)
        port = f"l{j}"
        lab._veth(self.router.ns, port, ns, "eth0", name)
        run(["ip", "-n", self.router.ns, "link", "set", port, "master", "lan", "up"])
        ip = HOME_LAN4.format(j)
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", HOME_LAN4.format(1)])
        ip6 = None
        if self.lan6:
            ip6 = f"{self.lan6}::{j:x}"
            run(["ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", "eth0", "nodad"])
            run(["ip", "-n", ns, "-6", "route", "add", "default", "via", f"{self.lan6}::1"])
        host = Host(lab, name, j, ns, ip, ip6, None)
        host.home = self
        if cap:
            lab._cap(host, cap, burst)
        lab.hosts.append(host)
        self.hosts.append(host)
        return host

    def tx_bytes(self):
        """What the home sent to the internet: its router's `wan` tx_bytes."""
        return self.router.tx_bytes()

    def ruleset(self):
        """`nft list ruleset` in the router."""
        return self.router.run([tool_path("nft"), "list", "ruleset"]).stdout

    def start_upnp(self, stun_host, http_port=UPNP_HTTP_PORT, natpmp=True):
        """Starts Debian's miniupnpd (nftables backend) in the router: UPnP
        IGD on the LAN (HTTP port `http_port`), NAT-PMP and PCP (unless
        `natpmp` is false: a router that speaks UPnP IGD only), for clients
        in 192.168.1.0/24 mapping their own address, ports 1024-65535. Its
        WAN address is private, so it maps nothing unless its STUN check
        (`ext_perform_stun`, against `stun_host`, see
        `Lab.add_stun_server`) finds no NAT above it: that is asserted
        here. Returns the process once it serves."""
        binary = tool_path("miniupnpd")
        if binary is None:
            raise LabError("`miniupnpd` (Debian's miniupnpd-nftables) is not installed; a UPnP "
                           "home needs it")
        if self.upnp is not None:
            raise LabError(f"miniupnpd already runs in {self.name}")
        stun_ip, stun_port = stun_host.stun
        lab = self.lab
        # miniupnpd's check that no NAT is above it waits for answers from
        # the STUN server's other address and port, which it never sent to:
        # the router's firewall lets those in (a router with a public WAN
        # address needs no such check).
        stun_ips = ", ".join([stun_host.ip4, *stun_host.extra_ip4])
        self.router.run(["nft", "insert", "rule", "inet", "filter", "input", "iifname", "wan",
                         "ip", "saddr", f"{{ {stun_ips} }}", "accept"])
        conf = lab.logdir / f"{self.name}-miniupnpd.conf"
        conf.write_text(UPNP_CONF.format(
            http_port=http_port, stun_ip=stun_ip, stun_port=stun_port,
            uuid=uuid.uuid4(), leases=lab.logdir / f"{self.name}-miniupnpd.leases",
            natpmp="yes" if natpmp else "no",
            lan=HOME_LAN4.format(0)))
        proc = self.router.popen(
            [binary, "-d", "-f", conf, "-P", lab.logdir / f"{self.name}-miniupnpd.pid"],
            "miniupnpd")
        deadline = time.monotonic() + 20
        while True:
            text = proc.stderr_text() + proc.stdout_text()
            stun = [line for line in text.splitlines() if "STUN: ext interface" in line]
            ready = (("Listening for NAT-PMP" in text or not natpmp)
                     and "HTTP listening on port" in text)
            if stun and ready:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise LabError(f"miniupnpd in {self.name} did not start "
                               f"(exit {proc.returncode}):\n{proc.tail(20)}")
            time.sleep(0.05)
        if "does not support port forwarding" in stun[-1] or "blocks" in stun[-1]:
            proc.stop()
            raise LabError(f"miniupnpd in {self.name} refuses to map ports: {stun[-1].strip()}")
        self.upnp = proc
        return proc

    def mappings(self):
        """The router's port mappings now: every `dnat` rule in miniupnpd's
        `prerouting_miniupnpd` chain, as dicts with `protocol`,
        `external_port`, `internal_addr`, `internal_port`, `description`.
        Read from nftables, whoever made them (UPnP, NAT-PMP or PCP)."""
        done = self.router.run(
            [tool_path("nft"), "-j", "list", "chain", "inet", "filter", "prerouting_miniupnpd"])
        return parse_mappings(json.loads(done.stdout))


class Carrier:
    """A carrier's NAT (see `Lab.add_carrier`): its router, and the home
    routers on its LAN."""

    def __init__(self, lab, name, router, nat, lan):
        self.lab = lab
        self.name = name
        self.router = router
        self.nat = nat
        self.lan = lan
        self.routers = 0

    def __repr__(self):
        return f"Carrier({self.name}, {self.router.ip4}, {self.nat})"

    def ruleset_text(self):
        """A home router's ruleset for its own LAN, with the input firewall."""
        return NAT_TABLE.format(masquerade=NAT_RULES[self.nat], lan=f"{self.lan}.0",
                                input=INPUT_FIREWALL)

    def attach(self, ns, name):
        """Links home router namespace `ns` (its `wan`) to the carrier's LAN:
        (the carrier's site, the router's WAN address)."""
        self.routers += 1
        j = self.routers + 1
        if j > 254:
            raise LabError(f"carrier {self.name}'s LAN is full")
        port = f"h{j}"
        self.lab._veth(self.router.ns, port, ns, "wan", f"home {name}")
        run(["ip", "-n", self.router.ns, "link", "set", port, "master", "lan", "up"])
        ip = f"{self.lan}.{j}"
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "wan"])
        run(["ip", "-n", ns, "link", "set", "wan", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", f"{self.lan}.1"])
        return self.router.site, ip


def parse_mappings(ruleset):
    """The port mappings (see `Home.mappings`) in `nft -j` output."""
    found = []
    for item in ruleset.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        mapping = {"protocol": None, "external_port": None, "internal_addr": None,
                   "internal_port": None, "description": rule.get("comment")}
        for expr in rule.get("expr", []):
            match = expr.get("match")
            if match:
                left, right = match.get("left", {}), match.get("right")
                payload = left.get("payload") if isinstance(left, dict) else None
                meta = left.get("meta") if isinstance(left, dict) else None
                if payload and payload.get("field") == "dport":
                    mapping["external_port"] = right
                    if payload.get("protocol") in ("tcp", "udp"):
                        mapping["protocol"] = payload["protocol"]
                elif (payload and payload.get("base") == "nh" and payload.get("offset") == 72
                      and payload.get("len") == 8):
                    # The IPv4 header's protocol byte, as miniupnpd matches it.
                    mapping["protocol"] = IP_PROTOCOLS.get(right, right)
                elif meta and meta.get("key") == "l4proto":
                    mapping["protocol"] = IP_PROTOCOLS.get(right, right)
            dnat = expr.get("dnat")
            if dnat:
                mapping["internal_addr"] = dnat.get("addr")
                mapping["internal_port"] = dnat.get("port")
        if mapping["internal_addr"] is not None:
            found.append(mapping)
    return found


IP_PROTOCOLS = {6: "tcp", 17: "udp"}


def tool_path(name):
    """Where program `name` is: on PATH, else in /usr/sbin or /sbin (a
    PATH without them is common off a root login shell); None when absent."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def site_prefix(k):
    """The first three octets of internet site `k`'s /24 (from 10.1.1)."""
    return f"10.{1 + (k - 1) // 254}.{(k - 1) % 254 + 1}"


def site6_prefix(k):
    """The first three groups of internet site `k`'s IPv6 /64 (the
    site's IPv4 10.A.B: 3fff:A:B). 3fff::/20 is set aside for
    documentation (RFC 9637): routed nowhere, so nothing leaves the lab, yet
    minimodel counts it as a global address (only 2001:db8::/32 is a
    documentation prefix to it)."""
    _, a, b = site_prefix(k).split(".")
    return f"3fff:{int(a):x}:{int(b):x}"


# A TCP connection to port 9 of argv[1] must be refused.
REFUSED_PROBE = (
    "import socket,sys\n"
    "f=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "s=socket.socket(f);s.settimeout(1)\n"
    "sys.exit(0 if s.connect_ex((sys.argv[1],9))==111 else 1)\n"
)


NAT_RULES = {"cone": "masquerade", "symmetric": "masquerade random"}

# A router's input chain on its WAN side. With a firewall (the default, as
# a home router has it): what no connection of its own asked for is
# rejected, and leaves no connection-tracking state. Without one (a Linux
# box whose input policy accepts): a punch packet that comes before its
# LAN host sent anything is kept as the router's own, and masquerade then
# maps the host's packets to that peer to another outside port.
INPUT_FIREWALL = """\
        iifname "wan" ct state established,related accept
        iifname "wan" meta l4proto { icmp, ipv6-icmp } accept
        iifname "wan" tcp dport 5201 accept
        iifname "wan" meta l4proto tcp reject with tcp reset
        iifname "wan" reject"""
INPUT_OPEN = """\
        iifname "wan" meta l4proto { icmp, ipv6-icmp } accept"""

NAT_TABLE = """\
table inet filter {{
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        iifname "lan" oifname "lan" accept
        iifname "lan" oifname "wan" accept
        jump miniupnpd
    }}
    chain miniupnpd {{
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
{input}
    }}
    chain prerouting {{
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
        oifname "wan" ip saddr {lan}/24 {masquerade}
    }}
    chain prerouting_miniupnpd {{
    }}
    chain postrouting_miniupnpd {{
    }}
}}
"""

UPNP_CONF = """\
ext_ifname=wan
listening_ip=lan
http_port={http_port}
enable_upnp=yes
enable_natpmp={natpmp}
ext_perform_stun=yes
ext_stun_host={stun_ip}
ext_stun_port={stun_port}
secure_mode=yes
system_uptime=yes
notify_interval=60
clean_ruleset_interval=600
uuid={uuid}
lease_file={leases}
allow 1024-65535 {lan}/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def _rate_bits(rate):
    """Bits per second of a tc rate like `100mbit`, `1gbit`."""
    match = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate.lower())
    if not match:
        raise LabError(f"rate {rate}: use tc's form, like 100mbit or 1gbit")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]
