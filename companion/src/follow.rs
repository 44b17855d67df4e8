//! Following publishers' channels (`docs/companion.md`, "Following"),
//! decided without I/O: when each followed channel is looked up (on a
//! period, and on demand within a rate limit), and what a checked channel
//! means for the library: which items stop being served as withdrawn, and
//! whether a new latest version is offered or fetched. What a round does
//! about the latest version is `minimodel_verifier::follow::plan_round`,
//! the decision `minimodel follow` makes too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minimodel_verifier::channel::{Channel, ChannelPeer, Withdrawal};
use minimodel_verifier::follow::{Held, Next, plan_round};
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::{ModelId, Sha256Digest};

use crate::library::{FollowPolicy, FollowRecord, ItemId, MAX_FOLLOWS};

/// How often each followed channel is looked up by itself.
pub const LOOKUP_PERIOD: Duration = Duration::from_secs(60 * 60);
/// The least time between two lookups of one follow: an on-demand lookup
/// sooner is refused (the API answers 429 with the time to wait).
pub const MIN_LOOKUP_INTERVAL: Duration = Duration::from_secs(60);
/// Lookups under way at once, over every follow.
pub const MAX_LOOKUPS_AT_ONCE: usize = 2;

/// How often follows are looked up. [`Default`] holds the product's
/// values ([`LOOKUP_PERIOD`], [`MIN_LOOKUP_INTERVAL`]); tests shorten
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Each follow is looked up by itself this long after its last lookup
    /// started.
    pub period: Duration,
    /// The least time between two lookups of one follow on demand.
    pub min_interval: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            period: LOOKUP_PERIOD,
            min_interval: MIN_LOOKUP_INTERVAL,
        }
    }
}

/// A follow: the publisher key and the model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FollowKey {
    /// The publisher key's bytes.
    pub publisher: [u8; 32],
    /// The model followed.
    pub model: ModelId,
}

impl FollowKey {
    /// The follow of `publisher`'s `model`.
    pub fn new(publisher: &PublicKey, model: ModelId) -> Self {
        Self {
            publisher: *publisher.as_bytes(),
            model,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When the next lookup is due.
    due: Instant,
    /// When the last lookup started.
    last: Option<Instant>,
    /// The lookup under way, by the generation of the follow it started
    /// for: it counts against [`MAX_LOOKUPS_AT_ONCE`] until it ends, even
    /// when its follow was removed (or removed and added again) meanwhile.
    in_flight: Option<u64>,
    /// The generation of the follow as it stands: each add makes a new
    /// one, so a lookup started for an earlier one is told it is stale.
    generation: u64,
    /// Followed now; `false` while a removed follow's lookup still runs.
    followed: bool,
}

/// A lookup to start: the follow and the generation it was started for
/// (given back to [`Schedule::finished`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The follow looked up.
    pub key: FollowKey,
    /// Which add of that follow it was started for.
    pub generation: u64,
}

/// Why an on-demand lookup is not started now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupRefused {
    /// No such follow.
    #[error("no such follow")]
    NotFollowed,
    /// One is under way.
    #[error("a lookup of this channel is under way")]
    Busy,
    /// Too soon after the last one.
    #[error("the channel was looked up less than {}s ago; try again in {}s", .interval.as_secs(), .retry_after.as_secs().max(1))]
    TooSoon {
        /// The least time between two lookups.
        interval: Duration,
        /// How long to wait.
        retry_after: Duration,
    },
}

/// When each follow's channel is looked up. Time is an argument.
#[derive(Debug, Default)]
pub struct Schedule {
    cadence: Cadence,
    slots: BTreeMap<FollowKey, Slot>,
    /// The last generation given out.
    generations: u64,
}

impl Schedule {
    /// An empty schedule at the product's cadence.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty schedule at `cadence`.
    pub fn with_cadence(cadence: Cadence) -> Self {
        Self {
            cadence,
            ..Self::default()
        }
    }

    /// A follow added (or found at start): due at once, or, when it was
    /// looked up before (removed and added again), once the cadence's
    /// interval since that lookup has passed; a lookup of the earlier
    /// follow still under way goes on counting and its result is stale.
    pub fn add(&mut self, key: FollowKey, now: Instant) {
        self.generations += 1;
        let generation = self.generations;
        let min_interval = self.cadence.min_interval;
        let slot = self.slots.entry(key).or_insert(Slot {
            due: now,
            last: None,
            in_flight: None,
            generation,
            followed: true,
        });
        if !slot.followed {
            slot.followed = true;
            slot.generation = generation;
            slot.due = slot.last.map_or(now, |last| (last + min_interval).max(now));
        }
    }

    /// A follow removed: never looked up again. A lookup under way keeps
    /// its place against the limit until it ends, and its result is
    /// stale ([`Self::finished`]); the time of the last lookup is kept for
    /// the cadence's interval, so that removing and adding a follow again
    /// does not look it up sooner.
    pub fn remove(&mut self, key: &FollowKey, now: Instant) {
        let min_interval = self.cadence.min_interval;
        match self.slots.get_mut(key) {
            Some(slot)
                if slot.in_flight.is_some()
                    || slot.last.is_some_and(|last| now < last + min_interval) =>
            {
                slot.followed = false;
            }
            Some(_) => {
                self.slots.remove(key);
            }
            None => {}
        }
    }

    /// Whether `key` is followed.
    pub fn contains(&self, key: &FollowKey) -> bool {
        self.slots.get(key).is_some_and(|slot| slot.followed)
    }

    /// The lookups to start now: the follows due, not under way, at
    /// most [`MAX_LOOKUPS_AT_ONCE`] under way in all (a removed follow's
    /// included); each is marked under way.
    pub fn poll_due(&mut self, now: Instant) -> Vec<Lookup> {
        // Removed follows are forgotten once nothing of them counts.
        let min_interval = self.cadence.min_interval;
        self.slots.retain(|_, slot| {
            slot.followed
                || slot.in_flight.is_some()
                || slot.last.is_some_and(|last| now < last + min_interval)
        });
        let mut busy = self
            .slots
            .values()
            .filter(|slot| slot.in_flight.is_some())
            .count();
        let mut due = Vec::new();
        for (key, slot) in &mut self.slots {
            if busy >= MAX_LOOKUPS_AT_ONCE {
                break;
            }
            if slot.followed && slot.in_flight.is_none() && slot.due <= now {
                slot.in_flight = Some(slot.generation);
                slot.last = Some(now);
                busy += 1;
                due.push(Lookup {
                    key: key.clone(),
                    generation: slot.generation,
                });
            }
        }
        due
    }

    /// An on-demand lookup of `key` (the API): due now, unless one is
    /// under way or the last started less than the cadence's interval
    /// ago. [`Self::poll_due`] then starts it.
    pub fn request(&mut self, key: &FollowKey, now: Instant) -> Result<(), LookupRefused> {
        let slot = self
            .slots
            .get_mut(key)
            .filter(|slot| slot.followed)
            .ok_or(LookupRefused::NotFollowed)?;
        if slot.in_flight.is_some() {
            return Err(LookupRefused::Busy);
        }
        if let Some(last) = slot.last {
            let next = last + self.cadence.min_interval;
            if next > now {
                return Err(LookupRefused::TooSoon {
                    interval: self.cadence.min_interval,
                    retry_after: next - now,
                });
            }
        }
        slot.due = now;
        Ok(())
    }

    /// `lookup` ended (found or not): the next is due the cadence's
    /// period after it started. Whether its result may be used: `false`
    /// when its follow was removed, or removed and added again, since it
    /// started (what it read was asked for a follow that is gone).
    pub fn finished(&mut self, lookup: &Lookup) -> bool {
        let Some(slot) = self.slots.get_mut(&lookup.key) else {
            return false;
        };
        if slot.in_flight == Some(lookup.generation) {
            slot.in_flight = None;
        }
        if !slot.followed {
            return false;
        }
        if slot.generation != lookup.generation {
            return false;
        }
        let period = self.cadence.period;
        slot.due = slot.last.map_or(slot.due, |last| last + period);
        true
    }

    /// When [`Self::poll_due`] has something next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|slot| slot.followed && slot.in_flight.is_none())
            .map(|slot| slot.due)
            .min()
    }
}

/// Why a follow is not added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowRefusal {
    /// A field does not parse.
    #[error("{0}")]
    Invalid(String),
    /// Followed already.
    #[error("model {model} of key {key} is followed already")]
    Exists {
        /// The key, `mmpk1...`.
        key: String,
        /// The model id.
        model: String,
    },
    /// The library follows [`MAX_FOLLOWS`] already.
    #[error("the library follows {MAX_FOLLOWS} channels already")]
    TooMany,
    /// `auto` without consent to fetch.
    #[error("a follow that fetches by itself (auto) needs consent to fetch")]
    ConsentNeeded,
    /// Not followed.
    #[error("model {model} of key {key} is not followed")]
    NotFound {
        /// The key, `mmpk1...`.
        key: String,
        /// The model id.
        model: String,
    },
}

/// The follows with `new` added last, or why not: its key and model
/// parse, it is not followed already, the library follows fewer than
/// [`MAX_FOLLOWS`], and `auto` comes with consent to fetch.
pub fn add_follow(
    follows: &[FollowRecord],
    new: FollowRecord,
    consent_to_fetch: bool,
) -> Result<Vec<FollowRecord>, FollowRefusal> {
    let (key, model) = new.key().map_err(FollowRefusal::Invalid)?;
    if find(follows, &FollowKey::new(&key, model.clone())).is_some() {
        return Err(FollowRefusal::Exists {
            key: key.to_string(),
            model: model.to_string(),
        });
    }
    if follows.len() >= MAX_FOLLOWS {
        return Err(FollowRefusal::TooMany);
    }
    if new.policy == FollowPolicy::Auto && !consent_to_fetch {
        return Err(FollowRefusal::ConsentNeeded);
    }
    if new.policy == FollowPolicy::Ask && new.consent.is_some() {
        return Err(FollowRefusal::Invalid(
            "consent is given only to a follow that fetches by itself (auto)".to_owned(),
        ));
    }
    let mut follows = follows.to_vec();
    follows.push(FollowRecord {
        publisher_key: key.to_string(),
        model_id: model.to_string(),
        ..new
    });
    Ok(follows)
}

/// Where the follow `key` is in `follows`.
pub fn find(follows: &[FollowRecord], key: &FollowKey) -> Option<usize> {
    follows.iter().position(|record| {
        record
            .key()
            .is_ok_and(|(publisher, model)| &FollowKey::new(&publisher, model) == key)
    })
}

/// An item of the library, as a follow's decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryItem {
    /// Its id.
    pub id: ItemId,
    /// Its model id.
    pub model: ModelId,
    /// SHA-256 of its manifest file.
    pub manifest_sha256: Sha256Digest,
    /// The key whose signature on its manifest verified, if any.
    pub signed_by: Option<PublicKey>,
    /// A share, or a delivered download: its whole file is here.
    pub whole: bool,
    /// Withdrawn already.
    pub withdrawn: bool,
}

/// What a checked channel means for the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Items to stop serving, each with the withdrawal that names it.
    pub withdraw: Vec<(ItemId, Withdrawal)>,
    /// About the model's latest version.
    pub latest: Latest,
}

/// What a follow does about the model's latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// Nothing: up to date, no such model, withdrawn, or no peer named
    /// (the reason is `plan_round`'s, kept for the view).
    Nothing(Next),
    /// Offer it: the user adds the download (policy ask).
    Offer {
        /// SHA-256 of its manifest.
        manifest_sha256: Sha256Digest,
        /// The peers the channel names.
        peers: Vec<ChannelPeer>,
    },
    /// Fetch it beside the versions here (policy auto).
    Fetch {
        /// SHA-256 of its manifest.
        manifest_sha256: Sha256Digest,
        /// The peers the channel names.
        peers: Vec<ChannelPeer>,
    },
}

/// Decides what `channel`, checked against `publisher`'s key, means for
/// the library `items`, following `model` with `policy`.
///
/// Only items whose manifest `publisher` signed are this follow's: a
/// withdrawal never stops an item another key signed, and only those
/// count as versions held. An item already withdrawn is not named again.
pub fn decide(
    publisher: &PublicKey,
    model: &ModelId,
    policy: FollowPolicy,
    channel: &Channel,
    items: &[LibraryItem],
) -> Decision {
    let ours: Vec<&LibraryItem> = items
        .iter()
        .filter(|item| item.signed_by.as_ref() == Some(publisher))
        .collect();
    let withdraw = ours
        .iter()
        .filter(|item| !item.withdrawn)
        .filter_map(|item| {
            channel
                .withdrawn
                .iter()
                .find(|w| w.manifest_sha256 == item.manifest_sha256)
                .map(|w| (item.id.clone(), w.clone()))
        })
        .collect();
    let held: Vec<Held> = ours
        .iter()
        .filter(|item| &item.model == model)
        .map(|item| Held {
            manifest_sha256: item.manifest_sha256,
            delivered: item.whole,
        })
        .collect();
    let round = plan_round(channel, model, &held);
    let latest = match round.next {
        Next::Fetch {
            manifest_sha256,
            peers,
            ..
        } if !ours
            .iter()
            .any(|item| item.manifest_sha256 == manifest_sha256) =>
        {
            match policy {
                FollowPolicy::Ask => Latest::Offer {
                    manifest_sha256,
                    peers,
                },
                FollowPolicy::Auto => Latest::Fetch {
                    manifest_sha256,
                    peers,
                },
            }
        }
        // A download of it is in the library already, not delivered:
        // it goes on as any download does.
        Next::Fetch {
            manifest_sha256, ..
        } => Latest::Nothing(Next::UpToDate(manifest_sha256)),
        other => Latest::Nothing(other),
    };
    Decision { withdraw, latest }
}

#[cfg(test)]
mod tests {
    use minimodel_verifier::channel::Latest as ChannelLatest;
    use minimodel_verifier::route::Route;
    use minimodel_verifier::signing::SecretKey;

    use super::*;
    use crate::library::ItemKind;

    fn key(n: u8) -> PublicKey {
        SecretKey::from_seed(&[n; 32]).public_key()
    }

    fn model() -> ModelId {
        ModelId::new("tiny").unwrap()
    }

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest([n; 32])
    }

    fn keys_of(lookups: Vec<Lookup>) -> Vec<FollowKey> {
        lookups.into_iter().map(|lookup| lookup.key).collect()
    }

    fn follow() -> FollowKey {
        FollowKey::new(&key(1), model())
    }

    fn item(n: u8, signed_by: Option<PublicKey>, whole: bool) -> LibraryItem {
        LibraryItem {
            id: ItemId::of(ItemKind::Share, &model(), &digest(100 + n)),
            model: model(),
            manifest_sha256: digest(n),
            signed_by,
            whole,
            withdrawn: false,
        }
    }

    fn withdrawal(n: u8) -> Withdrawal {
        Withdrawal {
            manifest_sha256: digest(n),
            reason_route: Route::parse(&format!("https://example.org/takedown/{n}")).unwrap(),
        }
    }

    fn channel(latest: u8, withdrawn: &[u8]) -> Channel {
        let mut channel = Channel::default();
        channel.models.insert(
            model(),
            ChannelLatest {
                manifest_sha256: digest(latest),
                peers: vec![ChannelPeer {
                    id: [9; 32],
                    addrs: vec!["192.0.2.1:4000".parse().unwrap()],
                }],
            },
        );
        channel.withdrawn = withdrawn.iter().map(|n| withdrawal(*n)).collect();
        channel
    }

    fn record(n: u8, policy: FollowPolicy) -> FollowRecord {
        FollowRecord {
            publisher_key: key(n).to_string(),
            model_id: "tiny".to_owned(),
            policy,
            added_at: "2026-11-28T00:00:00Z".to_owned(),
            last_seen: None,
            consent: (policy == FollowPolicy::Auto).then_some(crate::library::FollowConsent {
                fetch: true,
                trust_key: false,
            }),
            mirrors: Vec::new(),
        }
    }

    #[test]
    fn a_follow_is_added_once_within_the_limit_and_auto_needs_consent() {
        let one = add_follow(&[], record(1, FollowPolicy::Ask), false).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(find(&one, &follow()), Some(0));
        assert!(matches!(
            add_follow(&one, record(1, FollowPolicy::Ask), false),
            Err(FollowRefusal::Exists { .. })
        ));
        assert_eq!(
            add_follow(&one, record(2, FollowPolicy::Auto), false),
            Err(FollowRefusal::ConsentNeeded)
        );
        assert_eq!(
            add_follow(&one, record(2, FollowPolicy::Auto), true)
                .unwrap()
                .len(),
            2
        );
        let mut bad = record(3, FollowPolicy::Ask);
        bad.publisher_key = "mmpk1nope".to_owned();
        assert!(matches!(
            add_follow(&one, bad, false),
            Err(FollowRefusal::Invalid(_))
        ));
        let full: Vec<FollowRecord> = (0..MAX_FOLLOWS)
            .map(|n| record(n as u8 + 10, FollowPolicy::Ask))
            .collect();
        assert_eq!(
            add_follow(&full, record(1, FollowPolicy::Ask), false),
            Err(FollowRefusal::TooMany)
        );
    }

    #[test]
    fn a_new_follow_is_looked_up_at_once_then_every_period() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new();
        schedule.add(follow(), t0);
        assert_eq!(schedule.poll_timeout(), Some(t0));
        let first = keys_of(schedule.poll_due(t0));
        assert_eq!(first, vec![follow()]);
        // Under way: not started twice.
        assert!(schedule.poll_due(t0 + LOOKUP_PERIOD * 2).is_empty());
        assert_eq!(schedule.poll_timeout(), None);
        assert!(schedule.finished(&Lookup {
            key: follow(),
            generation: 1
        }));
        assert_eq!(schedule.poll_timeout(), Some(t0 + LOOKUP_PERIOD));
        assert!(
            schedule
                .poll_due(t0 + LOOKUP_PERIOD - Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(
            keys_of(schedule.poll_due(t0 + LOOKUP_PERIOD)),
            vec![follow()]
        );
    }

    #[test]
    fn an_on_demand_lookup_is_rate_limited_per_follow() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new();
        schedule.add(follow(), t0);
        let lookup = schedule.poll_due(t0).remove(0);
        assert_eq!(schedule.request(&follow(), t0), Err(LookupRefused::Busy));
        assert!(schedule.finished(&lookup));
        let soon = t0 + Duration::from_secs(20);
        assert_eq!(
            schedule.request(&follow(), soon),
            Err(LookupRefused::TooSoon {
                interval: MIN_LOOKUP_INTERVAL,
                retry_after: Duration::from_secs(40)
            })
        );
        assert!(schedule.poll_due(soon).is_empty());
        let later = t0 + MIN_LOOKUP_INTERVAL;
        assert_eq!(schedule.request(&follow(), later), Ok(()));
        assert_eq!(keys_of(schedule.poll_due(later)), vec![follow()]);
        let other = FollowKey::new(&key(2), model());
        assert_eq!(
            schedule.request(&other, later),
            Err(LookupRefused::NotFollowed)
        );
    }

    #[test]
    fn at_most_two_lookups_run_at_once_and_a_removed_follow_never_again() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new();
        let keys: Vec<FollowKey> = (1..=3).map(|n| FollowKey::new(&key(n), model())).collect();
        for key in &keys {
            schedule.add(key.clone(), t0);
        }
        let first = schedule.poll_due(t0);
        assert_eq!(first.len(), MAX_LOOKUPS_AT_ONCE);
        assert!(schedule.poll_due(t0).is_empty());
        schedule.finished(&first[0]);
        let next = schedule.poll_due(t0);
        assert_eq!(next.len(), 1);
        assert!(!first.contains(&next[0]));
        schedule.remove(&next[0].key, t0);
        assert!(
            !schedule.finished(&next[0]),
            "a removed follow's result is stale"
        );
        assert!(!schedule.contains(&next[0].key));
        assert!(
            schedule
                .poll_due(t0 + LOOKUP_PERIOD * 3)
                .iter()
                .all(|lookup| lookup.key != next[0].key)
        );
    }

    /// Removing and adding a follow again does not look it up sooner than
    /// the interval allows, and a removed follow is forgotten after it.
    #[test]
    fn removing_and_adding_a_follow_again_waits_out_the_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new();
        schedule.add(follow(), t0);
        let first = schedule.poll_due(t0).remove(0);
        assert!(schedule.finished(&first));
        let soon = t0 + Duration::from_secs(5);
        schedule.remove(&follow(), soon);
        assert!(!schedule.contains(&follow()));
        schedule.add(follow(), soon);
        assert!(schedule.poll_due(soon).is_empty());
        assert_eq!(schedule.poll_timeout(), Some(t0 + MIN_LOOKUP_INTERVAL));
        let second = schedule.poll_due(t0 + MIN_LOOKUP_INTERVAL);
        assert_eq!(keys_of(second.clone()), vec![follow()]);
        assert!(schedule.finished(&second[0]));
        // Removed for good: nothing of it is due, ever.
        schedule.remove(&follow(), t0 + MIN_LOOKUP_INTERVAL);
        assert!(schedule.poll_due(t0 + MIN_LOOKUP_INTERVAL * 3).is_empty());
        assert_eq!(schedule.poll_timeout(), None);
    }

    /// A follow removed and added again while its lookup runs: the lookup
    /// still counts against the limit, its result is stale, and the new
    /// follow is looked up no sooner than the interval allows.
    #[test]
    fn a_follow_removed_and_added_again_mid_lookup_neither_floods_nor_takes_the_old_result() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new();
        let keys: Vec<FollowKey> = (1..=3).map(|n| FollowKey::new(&key(n), model())).collect();
        schedule.add(keys[0].clone(), t0);
        let old = schedule.poll_due(t0).remove(0);
        for _ in 0..10 {
            schedule.remove(&keys[0], t0);
            schedule.add(keys[0].clone(), t0);
        }
        assert!(schedule.contains(&keys[0]));
        // Not looked up again while the old lookup runs, nor before the
        // interval since it started.
        assert!(schedule.poll_due(t0).is_empty());
        assert_eq!(schedule.request(&keys[0], t0), Err(LookupRefused::Busy));
        // The old lookup still holds one of the two places.
        schedule.add(keys[1].clone(), t0);
        schedule.add(keys[2].clone(), t0);
        let second = schedule.poll_due(t0);
        assert_eq!(keys_of(second.clone()), vec![keys[1].clone()]);
        // Its result is not the new follow's.
        assert!(!schedule.finished(&old));
        assert!(schedule.finished(&second[0]));
        let third = schedule.poll_due(t0 + Duration::from_secs(1));
        assert_eq!(keys_of(third.clone()), vec![keys[2].clone()]);
        assert!(schedule.finished(&third[0]));
        let again = schedule.poll_due(t0 + MIN_LOOKUP_INTERVAL);
        assert_eq!(keys_of(again.clone()), vec![keys[0].clone()]);
        assert_ne!(again[0].generation, old.generation);
        assert!(schedule.finished(&again[0]));
    }

    #[test]
    fn a_withdrawn_version_signed_by_the_key_stops_and_no_other() {
        let mut foreign = item(1, Some(key(2)), true);
        foreign.id = ItemId::of(ItemKind::Share, &model(), &digest(200));
        let unsigned = LibraryItem {
            id: ItemId::of(ItemKind::Share, &model(), &digest(201)),
            ..item(1, None, true)
        };
        let ours = item(1, Some(key(1)), true);
        let mut already = item(3, Some(key(1)), true);
        already.withdrawn = true;
        let items = [foreign, unsigned, ours.clone(), already];
        let decision = decide(
            &key(1),
            &model(),
            FollowPolicy::Ask,
            &channel(2, &[1, 3]),
            &items,
        );
        assert_eq!(decision.withdraw, vec![(ours.id, withdrawal(1))]);
    }

    #[test]
    fn a_new_latest_is_offered_or_fetched_as_the_policy_says() {
        let items = [item(1, Some(key(1)), true)];
        let ask = decide(
            &key(1),
            &model(),
            FollowPolicy::Ask,
            &channel(2, &[]),
            &items,
        );
        assert!(
            matches!(ask.latest, Latest::Offer { manifest_sha256, .. } if manifest_sha256 == digest(2))
        );
        let auto = decide(
            &key(1),
            &model(),
            FollowPolicy::Auto,
            &channel(2, &[]),
            &items,
        );
        assert!(
            matches!(auto.latest, Latest::Fetch { manifest_sha256, ref peers } if manifest_sha256 == digest(2) && peers.len() == 1)
        );
        assert!(auto.withdraw.is_empty());
    }

    #[test]
    fn a_latest_held_or_under_way_or_withdrawn_is_not_fetched_again() {
        // Held whole.
        let held = [item(2, Some(key(1)), true)];
        let decision = decide(
            &key(1),
            &model(),
            FollowPolicy::Auto,
            &channel(2, &[]),
            &held,
        );
        assert_eq!(decision.latest, Latest::Nothing(Next::UpToDate(digest(2))));
        // A download of it under way.
        let partial = [item(2, Some(key(1)), false)];
        let decision = decide(
            &key(1),
            &model(),
            FollowPolicy::Auto,
            &channel(2, &[]),
            &partial,
        );
        assert_eq!(decision.latest, Latest::Nothing(Next::UpToDate(digest(2))));
        // Withdrawn: never fetched.
        let decision = decide(
            &key(1),
            &model(),
            FollowPolicy::Auto,
            &channel(2, &[2]),
            &[],
        );
        assert_eq!(
            decision.latest,
            Latest::Nothing(Next::LatestWithdrawn(withdrawal(2)))
        );
        // The same version signed by another key does not count as held.
        let foreign = [item(2, Some(key(2)), true)];
        let decision = decide(
            &key(1),
            &model(),
            FollowPolicy::Auto,
            &channel(2, &[]),
            &foreign,
        );
        assert!(matches!(decision.latest, Latest::Fetch { .. }));
    }
}
