//! The use cases, written once below every front end: share a verified
//! local file ([`share`]), fetch an artifact from peers ([`fetch`]), find
//! the peers of an import request or of offers ([`peers`]), the manifest
//! a ticket names ([`ticket`]), stop (each
//! running thing takes a stop future), and status ([`status`]); and what
//! every front end tells its user first: the consent each share or fetch
//! needs, in words ([`consent`]), sizes and counts in words ([`words`]).
//!
//! The product's layers are presentation -> application use cases ->
//! verifier and domain, with transport and storage as adapters. The CLI's
//! one-shot commands, the demo, the library's front door
//! ([`crate::fetch()`], [`crate::seed()`]) and the companion call these;
//! none of them assembles a download or a seeder itself (node settings,
//! the partial download, the fetcher, the seeder).
//!
//! What a use case does not do: ask for consent (it says what to ask,
//! [`consent`]; the front end asks), judge a manifest against
//! a keyring (the caller passes the [`SignatureCheck`] it made first, as
//! every command must), print, or choose an identity. Those belong to the
//! front end, which knows its user.
//!
//! [`SignatureCheck`]: minimodel_verifier::signing::trust::SignatureCheck

pub mod consent;
pub mod fetch;
pub mod peers;
mod query;
pub mod share;
pub mod ticket;
pub mod words;

/// Status: what a download directory holds (partial, complete, how much),
/// and the same with every byte read again.
pub mod status {
    pub use crate::resume::{BytesCheck, DownloadStatus, StatusKind, status, verify_status};
}

use std::net::SocketAddr;
use std::time::Duration;

use crate::node::{CoreConfig, NodeSettings};
use crate::transport::TransportTuning;

/// The limits a front end may set on one share or download. `None` keeps
/// the core's default ([`CoreConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most peers connected at once (default 32).
    pub max_peers: Option<usize>,
    /// Upload cap, bytes per second (default: none).
    pub max_upload: Option<u64>,
    /// Download cap, bytes per second (default: none).
    pub max_download: Option<u64>,
    /// Give up a download after this long with nothing verified (default
    /// 5 min).
    pub give_up_after: Option<Duration>,
}

impl Limits {
    /// Lays the limits that are set over `core`'s settings; the unset
    /// ones keep what `core` has.
    pub fn apply(&self, core: &mut CoreConfig) {
        if let Some(max_peers) = self.max_peers {
            core.max_peers = max_peers;
        }
        if self.max_upload.is_some() {
            core.max_upload = self.max_upload;
        }
        if self.max_download.is_some() {
            core.max_download = self.max_download;
        }
        if let Some(give_up_after) = self.give_up_after {
            core.give_up_after = give_up_after;
        }
    }
}

/// The node settings of one share: where it listens, its transport's
/// tuning and its limits over the core's defaults.
pub(crate) fn node_settings(
    listen: Option<SocketAddr>,
    limits: &Limits,
    tuning: TransportTuning,
) -> NodeSettings {
    let mut core = CoreConfig::default();
    limits.apply(&mut core);
    NodeSettings {
        listen,
        tuning,
        core,
        ..NodeSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_limits_keep_the_core_defaults_and_set_ones_are_used() {
        let defaults = CoreConfig::default();
        let settings = node_settings(None, &Limits::default(), TransportTuning::default());
        assert_eq!(settings.core.max_peers, defaults.max_peers);
        assert_eq!(settings.core.give_up_after, defaults.give_up_after);
        assert_eq!(settings.core.max_upload, None);
        assert_eq!(settings.listen, None);

        let limits = Limits {
            max_peers: Some(3),
            max_upload: Some(1000),
            max_download: Some(2000),
            give_up_after: Some(Duration::from_secs(7)),
        };
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let settings = node_settings(Some(listen), &limits, TransportTuning::default());
        assert_eq!(settings.listen, Some(listen));
        assert_eq!(settings.core.max_peers, 3);
        assert_eq!(settings.core.max_upload, Some(1000));
        assert_eq!(settings.core.max_download, Some(2000));
        assert_eq!(settings.core.give_up_after, Duration::from_secs(7));
    }
}
