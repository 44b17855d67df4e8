//! Route safety (`docs/manifest-v0.md`, section Routes).
//!
//! SKELETON: filled in by the manifest work.

/// A validated metadata route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route(String);

impl Route {
    /// The route text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
