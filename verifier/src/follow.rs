//! One round of following a publisher's channel, decided without I/O
//! (`docs/channel.md`, "Following"): what to do about a model's latest
//! version given the checked channel and the versions held here, and
//! which of those the channel withdrew. `minimodel follow` and the
//! companion's follows both decide here.

use crate::Sha256Digest;
use crate::channel::{Channel, ChannelPeer, Withdrawal};
use crate::ids::ModelId;

/// A version of the followed model held here, as found (by `follow` in
/// its DIR, by the companion in its library).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// SHA-256 of its manifest (its directory's name).
    pub manifest_sha256: Sha256Digest,
    /// Its `.slm` is there with a receipt of this very manifest: it was
    /// delivered, checked whole when it was.
    pub delivered: bool,
}

/// What a round does about the model's latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The channel names no such model.
    NoSuchModel,
    /// The latest version is withdrawn: nothing is fetched.
    LatestWithdrawn(Withdrawal),
    /// The latest version is here, delivered.
    UpToDate(Sha256Digest),
    /// The latest version is not here, and the channel names no peer.
    NoPeers(Sha256Digest),
    /// Fetch the latest version from `peers`, reusing the chunks it shares
    /// with the delivered versions `reuse`.
    Fetch {
        /// SHA-256 of its manifest.
        manifest_sha256: Sha256Digest,
        /// The peers the channel names.
        peers: Vec<ChannelPeer>,
        /// The other delivered versions here, by name.
        reuse: Vec<Sha256Digest>,
    },
}

/// One round's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// About the latest version.
    pub next: Next,
    /// Versions here (delivered or partial) the channel lists as
    /// withdrawn: said, not served, never deleted.
    pub withdrawn_here: Vec<Withdrawal>,
}

/// Decides a round of following `model` given the checked `channel` and
/// the versions `held` here. No I/O.
pub fn plan_round(channel: &Channel, model: &ModelId, held: &[Held]) -> Round {
    let withdrawn_here = channel
        .withdrawn
        .iter()
        .filter(|w| held.iter().any(|h| h.manifest_sha256 == w.manifest_sha256))
        .cloned()
        .collect();
    let next = match channel.models.get(model) {
        None => Next::NoSuchModel,
        Some(latest) => {
            let digest = latest.manifest_sha256;
            if let Some(withdrawal) = channel
                .withdrawn
                .iter()
                .find(|w| w.manifest_sha256 == digest)
            {
                Next::LatestWithdrawn(withdrawal.clone())
            } else if held
                .iter()
                .any(|h| h.manifest_sha256 == digest && h.delivered)
            {
                Next::UpToDate(digest)
            } else if latest.peers.is_empty() {
                Next::NoPeers(digest)
            } else {
                Next::Fetch {
                    manifest_sha256: digest,
                    peers: latest.peers.clone(),
                    reuse: held
                        .iter()
                        .filter(|h| h.delivered && h.manifest_sha256 != digest)
                        .map(|h| h.manifest_sha256)
                        .collect(),
                }
            }
        }
    };
    Round {
        next,
        withdrawn_here,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::channel::Latest;
    use crate::route::Route;

    use super::*;

    fn digest(n: u8) -> Sha256Digest {
        Sha256Digest([n; 32])
    }

    fn peer() -> ChannelPeer {
        ChannelPeer {
            id: [9; 32],
            addrs: vec!["192.0.2.1:4000".parse().unwrap()],
        }
    }

    fn model() -> ModelId {
        ModelId::new("tiny").unwrap()
    }

    fn withdrawal(n: u8) -> Withdrawal {
        Withdrawal {
            manifest_sha256: digest(n),
            reason_route: Route::parse(&format!("https://example.org/takedown/{n}")).unwrap(),
        }
    }

    fn channel(latest: u8, peers: Vec<ChannelPeer>, withdrawn: &[u8]) -> Channel {
        let mut models = BTreeMap::new();
        models.insert(
            model(),
            Latest {
                manifest_sha256: digest(latest),
                peers,
            },
        );
        Channel {
            models,
            withdrawn: withdrawn.iter().map(|n| withdrawal(*n)).collect(),
        }
    }

    fn held(n: u8, delivered: bool) -> Held {
        Held {
            manifest_sha256: digest(n),
            delivered,
        }
    }

    #[test]
    fn an_empty_dir_fetches_the_latest_from_the_named_peers() {
        let round = plan_round(&channel(1, vec![peer()], &[]), &model(), &[]);
        assert_eq!(
            round.next,
            Next::Fetch {
                manifest_sha256: digest(1),
                peers: vec![peer()],
                reuse: vec![],
            }
        );
        assert!(round.withdrawn_here.is_empty());
    }

    #[test]
    fn the_latest_delivered_here_is_up_to_date() {
        let round = plan_round(
            &channel(2, vec![peer()], &[]),
            &model(),
            &[held(1, true), held(2, true)],
        );
        assert_eq!(round.next, Next::UpToDate(digest(2)));
    }

    #[test]
    fn a_partial_latest_is_fetched_again_and_delivered_older_versions_are_reused() {
        let round = plan_round(
            &channel(3, vec![peer()], &[]),
            &model(),
            &[held(1, true), held(2, false), held(3, false)],
        );
        assert_eq!(
            round.next,
            Next::Fetch {
                manifest_sha256: digest(3),
                peers: vec![peer()],
                reuse: vec![digest(1)],
            }
        );
    }

    #[test]
    fn a_withdrawn_latest_is_refused_with_its_route_even_when_held() {
        for here in [vec![], vec![held(2, true)]] {
            let round = plan_round(&channel(2, vec![peer()], &[2]), &model(), &here);
            assert_eq!(round.next, Next::LatestWithdrawn(withdrawal(2)));
        }
    }

    #[test]
    fn withdrawn_versions_here_are_named_and_only_those() {
        let round = plan_round(
            &channel(3, vec![peer()], &[1, 7]),
            &model(),
            &[held(1, true), held(2, false), held(3, true)],
        );
        assert_eq!(round.next, Next::UpToDate(digest(3)));
        assert_eq!(round.withdrawn_here, vec![withdrawal(1)]);
    }

    #[test]
    fn another_model_or_no_peers_fetches_nothing() {
        let other = ModelId::new("other").unwrap();
        assert_eq!(
            plan_round(&channel(1, vec![peer()], &[]), &other, &[]).next,
            Next::NoSuchModel
        );
        assert_eq!(
            plan_round(&channel(1, vec![], &[]), &model(), &[]).next,
            Next::NoPeers(digest(1))
        );
        // Up to date needs no peer.
        assert_eq!(
            plan_round(&channel(1, vec![], &[]), &model(), &[held(1, true)]).next,
            Next::UpToDate(digest(1))
        );
    }
}
