//! What the page draws, from the runs' counters: each running item's
//! chunks and peers ([`ActivityView`]), and the rates up and down, per
//! item and for the library, over the last minutes ([`RatesView`]).
//! Sans-IO: the counters, the monotonic time and the wall clock's
//! seconds go in, views come out. The one place rates are measured: the
//! item views' rates, the page's graphs and its peer table all read them
//! here.
//!
//! - Down is verified bytes (a download's progress), up is bytes of
//!   chunks served; both summed over the item's runs, so a run that
//!   starts again does not count what it resumed.
//! - Every [`RATE_EVERY`] a sample takes each item's bytes since the
//!   last one (an item that moved none is left out of it);
//!   [`RATE_SAMPLES`] are kept (five minutes).
//! - A peer's rates are its bytes between two readings of its run's
//!   counters (once a second).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use minimodel_swarm::node::NodeMetrics;
use minimodel_wire::PeerId;

use crate::library::ItemId;
use crate::supervisor::RunId;
use crate::view::{
    ActivityView, ChunkMapView, FoundBy, PeerDirection, PeerView, RatePair, RatesSample, RatesView,
};

/// How often the rates are sampled.
pub const RATE_EVERY: Duration = Duration::from_secs(1);
/// How many samples are kept (five minutes at [`RATE_EVERY`]).
pub const RATE_SAMPLES: usize = 300;
/// Samples an item view's rates are the mean of.
const RECENT: usize = 5;

/// A peer's counters at its last reading.
#[derive(Debug, Clone, Copy)]
struct PeerLast {
    at: Instant,
    down: u64,
    up: u64,
}

#[derive(Debug, Default)]
struct ItemActivity {
    /// The run whose counters were read last, with its uploaded and
    /// verified bytes then.
    last: Option<(RunId, u64, u64)>,
    /// Bytes served and verified over every run.
    up: u64,
    down: u64,
    /// `up` and `down` at the last sample.
    sampled: (u64, u64),
    /// Its rates at the last samples, newest last.
    recent: VecDeque<RatePair>,
    peers: BTreeMap<PeerId, PeerLast>,
    view: Option<ActivityView>,
}

/// Every item's activity, and the library's rates. See the module docs.
#[derive(Debug, Default)]
pub struct Activity {
    items: BTreeMap<ItemId, ItemActivity>,
    samples: VecDeque<RatesSample>,
    last_sample: Option<Instant>,
}

/// `wall` seconds since the Unix epoch, less `ago`, in RFC 3339 UTC.
fn rfc3339(wall: u64, ago: Duration) -> String {
    minimodel_verifier::receipt::rfc3339_utc(wall.saturating_sub(ago.as_secs()))
}

/// Bytes per second of `bytes` over `span` (none over no time).
fn rate(bytes: u64, span: Duration) -> f64 {
    let seconds = span.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

impl Activity {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `run` of item `id` read `metrics` at `now` (`wall`: the wall
    /// clock's seconds since the Unix epoch then): its bytes count, its
    /// peers' rates are measured; its view now.
    pub fn record(
        &mut self,
        id: &ItemId,
        run: RunId,
        metrics: &NodeMetrics,
        now: Instant,
        wall: u64,
    ) -> ActivityView {
        let item = self.items.entry(id.clone()).or_default();
        let (up, down) = (metrics.uploaded_bytes, metrics.verified_bytes);
        match item.last {
            Some((last_run, last_up, last_down)) if last_run == run => {
                item.up += up.saturating_sub(last_up);
                item.down += down.saturating_sub(last_down);
            }
            // A new run: what it resumed was counted by the runs before.
            _ => item.peers.clear(),
        }
        item.last = Some((run, up, down));
        let mut peers = Vec::new();
        let mut seen = BTreeMap::new();
        for figures in &metrics.peers {
            let (peer_down, peer_up) = (figures.downloaded_bytes(), figures.uploaded_bytes);
            let (down_rate, up_rate) = match item.peers.get(&figures.id) {
                Some(last) if figures.link.is_some() => {
                    let span = now.saturating_duration_since(last.at);
                    (
                        rate(peer_down.saturating_sub(last.down), span),
                        rate(peer_up.saturating_sub(last.up), span),
                    )
                }
                _ => (0.0, 0.0),
            };
            seen.insert(
                figures.id,
                PeerLast {
                    at: now,
                    down: peer_down,
                    up: peer_up,
                },
            );
            peers.push(PeerView {
                peer_id: figures.id.to_string(),
                address: figures
                    .link
                    .map(|link| link.remote)
                    .or(figures.address)
                    .map(|addr| addr.to_string()),
                found_by: figures.source.map(FoundBy::of),
                direction: figures.link.map(|link| {
                    if link.dialed {
                        PeerDirection::Dialed
                    } else {
                        PeerDirection::Incoming
                    }
                }),
                connected: figures.link.is_some(),
                since: figures
                    .link
                    .map(|link| rfc3339(wall, now.saturating_duration_since(link.since))),
                download_rate_bytes_per_second: down_rate,
                upload_rate_bytes_per_second: up_rate,
                downloaded_bytes: peer_down,
                uploaded_bytes: peer_up,
                banned: figures.banned,
            });
        }
        item.peers = seen;
        // Connected peers first, then the busiest.
        peers.sort_by(|a, b| {
            b.connected.cmp(&a.connected).then(
                (b.downloaded_bytes + b.uploaded_bytes)
                    .cmp(&(a.downloaded_bytes + a.uploaded_bytes)),
            )
        });
        let map = &metrics.chunk_map;
        let now_rates = item.recent.back().copied().unwrap_or_default();
        let view = ActivityView {
            id: id.to_string(),
            at: rfc3339(wall, Duration::ZERO),
            chunk_map: ChunkMapView {
                chunks: map.chunks,
                cell_chunks: map.cells.iter().map(|cell| cell.chunks).collect(),
                verified: map.cells.iter().map(|cell| cell.verified).collect(),
                in_flight: map.cells.iter().map(|cell| cell.in_flight).collect(),
                holders: map.cells.iter().map(|cell| cell.holders).collect(),
            },
            peers,
            rates: now_rates,
        };
        item.view = Some(view.clone());
        view
    }

    /// Run `run` of item `id` ended: its peers are gone and nothing is in
    /// flight; its view then, when it had one.
    pub fn ended(&mut self, id: &ItemId, run: RunId) -> Option<ActivityView> {
        let item = self.items.get_mut(id)?;
        if item.last.is_some_and(|(last, _, _)| last != run) {
            return None;
        }
        item.peers.clear();
        let view = item.view.as_mut()?;
        view.peers.clear();
        view.chunk_map.in_flight.iter_mut().for_each(|n| *n = 0);
        view.rates = RatePair::default();
        Some(view.clone())
    }

    /// Item `id`'s download is delivered: every chunk is verified, none is
    /// in flight (its node may end before its counters are read again);
    /// its view then, when it had one.
    pub fn delivered(&mut self, id: &ItemId) -> Option<ActivityView> {
        let view = self.items.get_mut(id)?.view.as_mut()?;
        let map = &mut view.chunk_map;
        map.verified.clone_from(&map.cell_chunks);
        map.in_flight.iter_mut().for_each(|n| *n = 0);
        Some(view.clone())
    }

    /// Forgets a removed item.
    pub fn forget(&mut self, id: &ItemId) {
        self.items.remove(id);
    }

    /// Item `id`'s newest view.
    pub fn view(&self, id: &ItemId) -> Option<&ActivityView> {
        self.items.get(id)?.view.as_ref()
    }

    /// Item `id`'s rates now: the mean of its last few samples.
    pub fn rates_of(&self, id: &ItemId) -> RatePair {
        let Some(item) = self.items.get(id) else {
            return RatePair::default();
        };
        let count = item.recent.len().min(RECENT);
        if count == 0 {
            return RatePair::default();
        }
        let recent = item.recent.iter().rev().take(count);
        let (up, down) = recent.fold((0.0, 0.0), |(up, down), pair| {
            (up + pair.up, down + pair.down)
        });
        RatePair {
            up: up / count as f64,
            down: down / count as f64,
        }
    }

    /// Samples every item's bytes since the last sample, and the
    /// library's (their sum): the sample, as the event stream sends it.
    pub fn sample(&mut self, now: Instant, wall: u64) -> RatesSample {
        let span = self
            .last_sample
            .map_or(RATE_EVERY, |last| now.saturating_duration_since(last));
        self.last_sample = Some(now);
        let mut library = RatePair::default();
        let mut items = BTreeMap::new();
        for (id, item) in &mut self.items {
            let pair = RatePair {
                up: rate(item.up - item.sampled.0, span),
                down: rate(item.down - item.sampled.1, span),
            };
            item.sampled = (item.up, item.down);
            item.recent.push_back(pair);
            if item.recent.len() > RECENT {
                item.recent.pop_front();
            }
            library.up += pair.up;
            library.down += pair.down;
            // Only items that moved bytes: a library of a thousand idle
            // items keeps small samples.
            if pair != RatePair::default() {
                items.insert(id.to_string(), pair);
            }
        }
        let sample = RatesSample {
            at: rfc3339(wall, Duration::ZERO),
            library,
            items,
        };
        self.samples.push_back(sample.clone());
        if self.samples.len() > RATE_SAMPLES {
            self.samples.pop_front();
        }
        sample
    }

    /// The samples kept, oldest first.
    pub fn rates(&self) -> RatesView {
        RatesView {
            every_seconds: RATE_EVERY.as_secs(),
            samples: self.samples.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minimodel_swarm::node::{LinkFigures, PeerFigures};
    use minimodel_swarm::session::PeerStats;

    fn item() -> ItemId {
        "0123456789abcdef".parse().unwrap()
    }

    fn metrics(verified: u64, uploaded: u64, peer_down: u64, since: Instant) -> NodeMetrics {
        let peer = PeerFigures {
            download: PeerStats {
                bytes: peer_down,
                ..PeerStats::default()
            },
            uploaded_bytes: uploaded,
            source: Some(minimodel_node_source()),
            link: Some(LinkFigures {
                remote: "192.0.2.7:4433".parse().unwrap(),
                dialed: true,
                since,
            }),
            ..PeerFigures::of(PeerId([7; 32]))
        };
        NodeMetrics {
            verified_bytes: verified,
            uploaded_bytes: uploaded,
            peers: vec![peer],
            ..NodeMetrics::default()
        }
    }

    fn minimodel_node_source() -> minimodel_swarm::node::Source {
        minimodel_swarm::node::Source::Offer
    }

    #[test]
    fn rates_count_bytes_between_samples_over_runs_not_what_a_run_resumed() {
        let base = Instant::now();
        let at = |s: u64| base + Duration::from_secs(s);
        let mut activity = Activity::new();
        let id = item();
        // A run that resumed 1000 verified bytes: none counts.
        activity.record(&id, RunId(1), &metrics(1000, 0, 0, base), at(0), 100);
        activity.sample(at(0), 100);
        // 2000 verified in two seconds, 500 served.
        activity.record(&id, RunId(1), &metrics(3000, 500, 2000, base), at(2), 102);
        let sample = activity.sample(at(2), 102);
        assert_eq!(
            sample.items[id.as_str()],
            RatePair {
                up: 250.0,
                down: 1000.0
            }
        );
        assert_eq!(
            sample.library,
            RatePair {
                up: 250.0,
                down: 1000.0
            }
        );
        // The next run starts from 3000: its first reading counts nothing.
        activity.record(&id, RunId(2), &metrics(3000, 0, 0, at(3)), at(3), 103);
        let sample = activity.sample(at(3), 103);
        assert_eq!(
            sample.items.get(id.as_str()),
            None,
            "an idle item is left out"
        );
        activity.record(&id, RunId(2), &metrics(4000, 0, 1000, at(3)), at(4), 104);
        let sample = activity.sample(at(4), 104);
        assert_eq!(sample.items[id.as_str()].down, 1000.0);
        // The item's rate is the mean of its last samples: 0 (what the
        // first run resumed), 1000, 0 (the second run's first reading)
        // and 1000 bytes a second.
        let mean = activity.rates_of(&id);
        assert!(
            (mean.down - (0.0 + 1000.0 + 0.0 + 1000.0) / 4.0).abs() < 1e-9,
            "{mean:?}"
        );
        assert_eq!(activity.rates().samples.len(), 4);
        for second in 5..400 {
            activity.sample(at(second), 100 + second);
        }
        assert_eq!(activity.rates().samples.len(), RATE_SAMPLES);
    }

    #[test]
    fn a_peer_row_says_where_how_and_since_when_and_its_rates() {
        let base = Instant::now();
        let at = |s: u64| base + Duration::from_secs(s);
        let mut activity = Activity::new();
        let id = item();
        let first = activity.record(&id, RunId(1), &metrics(0, 0, 0, base), at(10), 1_000);
        assert_eq!(first.peers[0].download_rate_bytes_per_second, 0.0);
        let view = activity.record(&id, RunId(1), &metrics(0, 300, 4000, base), at(12), 1_002);
        let peer = &view.peers[0];
        assert_eq!(peer.address.as_deref(), Some("192.0.2.7:4433"));
        assert_eq!(peer.found_by, Some(FoundBy::Given));
        assert_eq!(peer.direction, Some(PeerDirection::Dialed));
        assert!(peer.connected);
        assert_eq!(peer.download_rate_bytes_per_second, 2000.0);
        assert_eq!(peer.upload_rate_bytes_per_second, 150.0);
        // Connected 12 s before wall second 1002.
        assert_eq!(
            peer.since.as_deref(),
            Some(minimodel_verifier::receipt::rfc3339_utc(990).as_str())
        );
        let delivered = activity.delivered(&id).unwrap();
        assert_eq!(
            delivered.chunk_map.verified,
            delivered.chunk_map.cell_chunks
        );
        let ended = activity.ended(&id, RunId(1)).unwrap();
        assert!(ended.peers.is_empty());
        assert!(activity.ended(&id, RunId(7)).is_none(), "another run's end");
        activity.forget(&id);
        assert!(activity.view(&id).is_none());
    }
}
