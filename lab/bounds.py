"""The bounds the lab holds minimodel's figures to.

A scenario that reports a figure asserts it: a bound set from the runs
measured so far, about 1.3 times the worst of them (or the worst divided
by 1.3 for a figure that must stay high), so that a regression of that
size fails CI. docs/performance.md ("Bounds the lab holds") lists each
bound beside its figure, with the runs it was set from. A scenario whose
figure is too noisy to bound is named in UNBOUNDED with the reason.

Bounds hold for minimodel only: libtorrent's figures are printed beside
them for comparison.
"""

from __future__ import annotations

import operator

# scenario -> [(figure, "<=" or ">=", limit)]. A figure is a key of the
# scenario's result (lab/lab.py, lab/internet.py, lab/library.py); a dotted
# key reaches into a nested one.
BOUNDS = {
    # Peers faster than the seeder: the seeder's uplink decides, so the
    # time is close to F/u_s and the seeder sends little more than a copy.
    "swarm-4x48": [("time_over_bound", "<=", 1.40), ("seeder_copies", "<=", 1.40)],
    "swarm-8x48": [("time_over_bound", "<=", 1.60), ("seeder_copies", "<=", 1.50)],
    "swarm-4x256": [("time_over_bound", "<=", 1.40), ("seeder_copies", "<=", 1.38)],
    "swarm-8x256": [("time_over_bound", "<=", 1.37), ("seeder_copies", "<=", 1.38)],
    "seeders-4x256": [("fraction_of_caps", ">=", 0.73), ("seeders_sent_copies", "<=", 1.35)],
    "seeders-4x256-relay": [("fraction_of_caps", ">=", 0.73),
                            ("seeders_sent_copies", "<=", 1.35)],
    # 50 ms and 1 % loss each way through the relay: the goal is a ratio of
    # the two runs (>= 0.8), read in docs/performance.md; each is bounded
    # on its own here.
    "seeders-4x256-delay": [("fraction_of_caps", ">=", 0.58)],
    "seeders-4x256-lossy": [("fraction_of_caps", ">=", 0.47)],
    # 4 MiB through the relay at 10 ms and 1 % loss each way, timed from
    # the link's start (its `peer-connected` event): 0.95 to 1.21 s over
    # 27 runs of 2026-12-03 (12 beside two busy loops), the link up at
    # 0.10 to 0.19 s. One CI run of that day took 2.17 s from the fetch's
    # start, its link up only after 0.5 s (a handshake packet lost at this
    # loss rate waits out QUIC's first probe timeout, about 1 s) and its
    # transfer about 1.3 to 1.6 s with the background builds beside it:
    # the bound is that transfer's upper end times 1.25. The link's start
    # is bounded to allow two lost handshake packets (1 s, then 2 s).
    "relay-smoke": [("transfer_s", "<=", 2.0), ("connect_s", "<=", 3.5)],
    # Home uplinks: the peers' uplinks decide. A seeder slowed to half its
    # cap moves T* here by 1.21 only (the peers' uplinks are most of it),
    # inside this scenario's spread: its best second shows it. At half
    # the cap it is at most 0.5 and the upload bucket's 1 MiB of burst
    # over a second at the cap's 4.78 MB/s, 0.72 (0.712 and 0.715
    # measured, 2026-11-27); at full cap 0.844 to 1.022 in 15 runs of
    # 2026-11-29 (one CI run of the code before them: 0.776). The others:
    # the worst of those 15 runs times 1.3 (the seeder's use over 1.3),
    # rounded outward.
    "uplinks-8x16-mixed": [("time_over_bound", "<=", 2.2), ("median_over_bound", "<=", 2.0),
                           ("seeder_uplink_used", ">=", 0.43),
                           ("seeder_peak_of_cap", ">=", 0.77),
                           ("peers_never_got_a_byte", "<=", 0)],
    # Release binaries, five runs of 2026-11-30: 1.278 to 1.303.
    "uplinks-12x16-mixed": [("time_over_bound", "<=", 1.7), ("peers_never_got_a_byte", "<=", 0)],
    "uplinks-24x32-mixed": [("time_over_bound", "<=", 1.6), ("peers_never_got_a_byte", "<=", 0)],
    "uplinks-24x32-10": [("time_over_bound", "<=", 1.55), ("peers_never_got_a_byte", "<=", 0)],
    "uplinks-24x128-mixed": [("time_over_bound", "<=", 1.42),
                             ("peers_never_got_a_byte", "<=", 0)],
    # CPU-bound on two cores at full rate (2 % idle): bounded for a
    # regression, read at --rate-scale 0.5 for the figure.
    "uplinks-40x32-mixed": [("time_over_bound", "<=", 1.8), ("peers_never_got_a_byte", "<=", 0)],
    "uplinks-40x128-mixed": [("time_over_bound", "<=", 1.47), ("peers_never_got_a_byte", "<=", 0)],
    "uplinks-40x32-one24": [("time_over_bound", "<=", 1.73), ("peers_never_got_a_byte", "<=", 0)],
    # Homes behind routers trade among themselves: the copies between
    # them are bounded below near what they are.
    "homes-4x32-cone": [("time_over_bound", "<=", 2.2), ("copies_from_other_peers", ">=", 1.1)],
    # Its copies between peers: 1.586 to 1.695 in seven runs of
    # 2026-11-30 (six beside two busy loops, as CI's background builds
    # load it), and 1.344 in one CI run where the seeder sent one home 0.73
    # of the file and that peer, done at 3.5 s, left the crowd with its
    # uplink unused; the bound is that run's divided by 1.1.
    "homes-4x32-symmetric-upnp": [("time_over_bound", "<=", 2.1),
                                  ("copies_from_other_peers", ">=", 1.22),
                                  ("peers_with_a_mapping", ">=", 4)],
    "homes-4x256-cone": [("time_over_bound", "<=", 1.7), ("copies_from_other_peers", ">=", 1.27)],
    # Symmetric NATs at both ends and no mapping: nothing moves between the
    # homes yet; only the time is bounded.
    "homes-4x256-symmetric": [("time_over_bound", "<=", 2.4)],
    "homes-4x256-cone-upnp": [("time_over_bound", "<=", 1.7),
                              ("copies_from_other_peers", ">=", 1.3),
                              ("peers_with_a_mapping", ">=", 4)],
    "homes-4x256-symmetric-upnp": [("time_over_bound", "<=", 1.7),
                                   ("copies_from_other_peers", ">=", 1.3),
                                   ("peers_with_a_mapping", ">=", 4)],
    "neighbours-2x32": [("time_over_bound", "<=", 1.0), ("copies_from_other_peers", ">=", 0.6),
                        ("seeder_copies", "<=", 1.4)],
    "neighbours-2x256": [("time_over_bound", "<=", 0.85),
                         ("copies_from_other_peers", ">=", 0.75),
                         ("seeder_copies", "<=", 1.35)],
    "library-4x4": [("time_over_bound", "<=", 1.42),
                    ("companion_rss_MiB.peak_during_fetches", "<=", 30.0),
                    ("big_companion_over_seed", "<=", 1.31)],
    "library-20x8": [("time_over_bound", "<=", 1.33),
                     ("companion_rss_MiB.peak_during_fetches", "<=", 64.0),
                     ("big_companion_over_seed", "<=", 1.31)],
    # A cold start from one HTTPS mirror and no seeder. Its goal is the
    # comparison with libtorrent's web seed (the *-vs-libtorrent scenarios
    # below; docs/performance.md, "Mirrors"); these bound a regression of
    # minimodel's own figures from the runs measured: 24x32 last 1.399 to 1.516 T*,
    # 1.561 to 1.689 copies (five runs); 4x16 last 2.427 to 3.203 T*, 1.833 to 2.687
    # copies (six runs).
    "mirror-cold-24x32": [("time_over_bound", "<=", 1.97), ("mirror_copies", "<=", 2.2),
                          ("peers_never_got_a_byte", "<=", 0)],
    "mirror-4x16": [("time_over_bound", "<=", 4.2), ("mirror_copies", "<=", 3.5),
                    ("peers_never_got_a_byte", "<=", 0)],
    # The same cold start beside libtorrent with the mirror as its web seed:
    # the goals themselves (minimodel's last peer done first, the mirror
    # sending no more copies for minimodel than for libtorrent), on the
    # medians of three runs each. 24x32, release, single pairs: 1.14 to
    # 1.60 and 0.18 to 0.32 (medians 1.284, 0.245); 12x16, the test build
    # (CI), single pairs 1.09 to 1.85 and 0.15 to 0.27 (medians of three
    # 1.282, 0.233).
    "mirror-cold-24x32-vs-libtorrent": [("libtorrent_over_minimodel", ">=", 1.0),
                                        ("mirror_copies_over_libtorrent", "<=", 1.0)],
    "mirror-cold-12x16-vs-libtorrent": [("libtorrent_over_minimodel", ">=", 1.0),
                                        ("mirror_copies_over_libtorrent", "<=", 1.0)],
    # One mirror (the lab's Python server) against one seed, 256 MiB: the
    # goal is within 10 % (1.1), not met; measured 1.722, 2.091, 1.956.
    "mirror-vs-seed-256": [("mirror_over_seed", "<=", 2.72)],
    # The same against nginx, as mirrors are served: the goal, within 10 %
    # (measured 0.854, 0.712, 0.716).
    "mirror-vs-seed-256-nginx": [("mirror_over_seed", "<=", 1.1)],
    # minimodel against rqbit between two hosts of one LAN: the goal is no
    # slower than rqbit (1.282 to 1.653 measured).
    "compare-lan-256": [("rqbit_over_minimodel", ">=", 1.0)],
    "compare-lan-1g": [("rqbit_over_minimodel", ">=", 1.0)],
    "compare-lan-4g": [("rqbit_over_minimodel", ">=", 1.0)],
    # The default controller beside CUBIC on one capped uplink: each
    # within 0.6 to 1.6 of an equal share (the least of two at 0.6 or more
    # holds both), the goal; measured 0.84 to 1.0 in six runs
    # (docs/performance.md).
    "share-default-cubic": [("least_over_equal", ">=", 0.6)],
    # One connection on a long lossy path keeps 0.8 of the same path
    # without loss (docs/performance.md, "One connection, far and lossy"),
    # 0.7 at 150 ms and 0.5 %: the goals of the far-and-lossy issue, each
    # pair a single run (the spread is in docs/performance.md).
    "far-64-25ms-1pct-50mbit": [("lossy_over_clean", ">=", 0.8)],
    "far-64-50ms-1pct": [("lossy_over_clean", ">=", 0.8)],
    "far-64-50ms-1pct-50mbit": [("lossy_over_clean", ">=", 0.8)],
    "far-256-50ms-1pct": [("lossy_over_clean", ">=", 0.8)],
    "far-256-50ms-1pct-50mbit": [("lossy_over_clean", ">=", 0.8)],
    "far-64-150ms-0.5pct": [("lossy_over_clean", ">=", 0.7)],
    "far-64-150ms-0.5pct-50mbit": [("lossy_over_clean", ">=", 0.7)],
    # Two homes whose routers map nothing, a relay named in the ticket
    # (lab/relayed.py; the goals of docs/relay.md's issue): introduced, they
    # punch, and the relay carries at most 5 % of the bytes, the fetch
    # within 1.5 times the file at the home uplink (1.066 and 1.070
    # measured, nothing relayed); behind symmetric NATs the relay carries
    # the file at 0.9 of the lesser of its pair rate and the uplinks or
    # more (0.982); IPv6 homes punch and nothing is relayed.
    "relay-homes-cone": [("time_over_uplink", "<=", 1.5), ("relay_share", "<=", 0.05)],
    "relay-homes-cone-open": [("time_over_uplink", "<=", 1.5), ("relay_share", "<=", 0.05)],
    "relay-homes-symmetric": [("rate_over_lesser", ">=", 0.9)],
    "relay-homes-ipv6": [("time_over_uplink", "<=", 1.5), ("relay_forwarded_bytes", "<=", 0)],
    # 24 homes of mixed routers, a publisher at home, one relay: the goal,
    # 1.3 times the heterogeneous bound (1.289 measured with the CPU busy).
    "relay-homes-24x32-mixed": [("time_over_bound", "<=", 1.3),
                                ("peers_never_got_a_byte", "<=", 0)],
    # 16 MiB over a 20 Mbit home uplink: 7.0 s at the cap.
    "home-seeder-upnp": [("fetch_s", "<=", 9.5)],
    "home-seeder-igd": [("fetch_s", "<=", 9.5)],
}

# Scenarios that report a figure and hold no bound on it, with the reason.
UNBOUNDED = {
    "seeders-4x256-delay-bbr": "BBR is an option, run beside the default for comparison",
    "seeders-4x256-lossy-bbr": "BBR is an option, run beside the default for comparison",
    "share-default-default": "shares of one capped uplink between two fetches: a comparison "
                             "read in docs/performance.md, not a product figure",
    "share-one-node": "shares of one capped uplink between one node's uploads: a comparison "
                      "read in docs/performance.md, not a product figure",
    "share-cubic-cubic": "shares of one capped uplink between two CUBIC fetches: a reference "
                         "for the others, not a product figure",
    "relay-50ms": "a behaviour check (slow set); its time is the path's, not ours",
    "lan-30x256": "CPU-bound on two cores at full rates (thirty peers receiving at a gigabit): "
                  "the machine decides the figure; read it at --rate-scale 0.1",
    "lan-30x256-mdns": "CPU-bound on two cores at full rates, as lan-30x256",
}

OPS = {"<=": operator.le, ">=": operator.ge}


def figure(result, key):
    """The value at `key` (dotted) of a result, or None."""
    value = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def check(name, result):
    """What breaks the bounds of scenario `name` in `result`, in words (an
    empty list when every bound holds). A bounded figure that is missing
    breaks its bound: a run that reported nothing proves nothing."""
    broken = []
    for key, op, limit in BOUNDS.get(name, []):
        value = figure(result, key)
        if value is None:
            broken.append(f"{key}: not reported, bound {op} {limit}")
        elif not OPS[op](value, limit):
            broken.append(f"{key} {value} breaks its bound {op} {limit} "
                          f"(docs/performance.md, \"Bounds the lab holds\")")
    return broken
