//! Names the core gives to things it tracks.

use std::fmt;

/// One connection to a peer, from the first packet of its handshake (or
/// the dial that starts it) to its close. The core hands out a new one for
/// every attempt, never reused, so an event about a link that is gone is
/// recognised and ignored. A peer that reconnects gets a new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link {}", self.0)
    }
}
