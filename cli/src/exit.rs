//! Exit codes of the contract and the failures that carry them.
//!
//! 0 success, 1 transfer or I/O failure, 2 usage, 3 invalid input (manifest,
//! request, offer, route, `.slm`, key file, keyring, a file in the way), 4
//! verification failed
//! (the bytes, or a manifest's signature or key), 5 consent not given,
//! 130 interrupted (state saved).

use std::fmt;

/// Why a command failed, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Transfer or I/O failure.
    Transfer = 1,
    /// The command line was wrong.
    Usage = 2,
    /// A manifest, request, offer, route or `.slm` file is malformed.
    InvalidInput = 3,
    /// The bytes do not match what the manifest says.
    VerificationFailed = 4,
    /// The user did not consent.
    NoConsent = 5,
    /// Stopped by SIGINT or SIGTERM; what was verified is saved.
    Interrupted = 130,
}

/// A failed command: its exit code, the error, and what to do about it.
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (exit {})", self.error, self.exit as i32)
    }
}

/// Anything not classified is a transfer or I/O failure.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::new(Exit::Transfer, error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::new(Exit::Transfer, error)
    }
}

/// Classifies the error of a `Result` with an exit code.
pub trait OrExit<T> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, exit: Exit) -> Result<T, Failure> {
        self.map_err(|error| Failure::new(exit, error))
    }
}
