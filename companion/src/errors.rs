//! An API request refused or failed: its HTTP status and its body
//! ([`ErrorBody`]: a kind for programs, words and a hint for people).
//! The service answers with it; the HTTP layer only sends it.

use crate::supervisor::Refusal;
use crate::trust::TrustStoreError;
use crate::view::{Ask, ErrorBody};

/// An API request that is refused or failed: its HTTP status and body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// A refusal with `status`, `kind` and `error` in words.
    pub fn new(status: u16, kind: &str, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                kind: kind.to_owned(),
                error: error.into(),
                hint: None,
                needs: Vec::new(),
            },
        }
    }

    /// The same, with what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.body.hint = Some(hint.into());
        self
    }

    /// The same with another status and kind.
    pub fn with_status(mut self, status: u16, kind: &str) -> Self {
        self.status = status;
        self.body.kind = kind.to_owned();
        self
    }

    /// 422: the request's content is refused.
    pub fn invalid(error: impl Into<String>) -> Self {
        Self::new(422, "invalid-input", error)
    }

    /// 404.
    pub fn not_found(id: &str) -> Self {
        Self::new(404, "not-found", format!("no item {id} in the library"))
    }

    /// 409.
    pub fn conflict(error: impl Into<String>) -> Self {
        Self::new(409, "conflict", error)
    }

    /// 500: reading or writing failed.
    pub fn io(error: impl Into<String>) -> Self {
        Self::new(500, "io", error)
    }

    /// A keyring's refusal (422) or failure (500).
    pub fn trust(error: TrustStoreError) -> Self {
        let advice = error.advice();
        match error {
            TrustStoreError::Refused(refused) => Self::new(
                422,
                "verification-failed",
                format!("the manifest is refused: {refused}"),
            )
            .hint(advice),
            TrustStoreError::Keyring(problem) => Self::io(problem).hint(advice),
        }
    }

    /// 403: consent is missing, with the words of each consent missing.
    pub fn consent_needed(missing: Vec<Ask>) -> Self {
        let names: Vec<&str> = missing.iter().map(|ask| ask.consent.as_str()).collect();
        let mut error = Self::new(
            403,
            "consent-needed",
            format!("consent needed: {}", names.join(", ")),
        )
        .hint("show the user each ask's words, and set its consent field only on a yes");
        error.body.needs = missing;
        error
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let text = refusal.to_string();
        match refusal {
            Refusal::Exists { .. } | Refusal::OtherKind { .. } | Refusal::SameModelId { .. } => {
                Self::conflict(text)
            }
            Refusal::TooMany => Self::new(429, "too-many", text),
            Refusal::NotFound(id) => Self::not_found(id.as_str()),
            Refusal::DoesNotFit { refusal, .. } => {
                let hint = match refusal {
                    crate::quota::QuotaRefusal::OverQuota { .. } => {
                        "raise the quota (`minimodel companion limits --quota SIZE`, or PUT /api/v1/limits) or remove a download"
                    }
                    crate::quota::QuotaRefusal::DiskFull { .. } => {
                        "free space on the disk of the library"
                    }
                };
                Self::new(507, "over-quota", text).hint(hint)
            }
        }
    }
}
