//! What a mirror's HTTP response means for the download: a pure function
//! of the status and the few headers we read ([`classify`]), and the
//! parsers of those headers. No I/O; the client (`super::client`) feeds it
//! what arrived.
//!
//! Headers read, each at most [`MAX_HEADER_VALUE`] bytes:
//! - `Content-Range: bytes FIRST-LAST/TOTAL` (or `bytes */TOTAL` on a
//!   416), the range a `206` carries: it must be the range asked, and
//!   `TOTAL`, when given, the artifact's length;
//! - `Content-Length`: the body of a `206` must be exactly the range;
//! - `Content-Type`: a `multipart/byteranges` answer is not the one range
//!   asked;
//! - `Location` on a redirect (resolved and checked by
//!   `MirrorUrl::join`);
//! - `ETag` and `Last-Modified`: the validators, kept as sent
//!   ([`minimodel_node::mirror::MAX_VALIDATOR_LEN`] bytes at most,
//!   printable ASCII, else left out).

use std::ops::Range;

use minimodel_node::mirror::{
    MAX_VALIDATOR_LEN, MirrorFailure, MirrorFault, MirrorTrouble, MirrorUnusable, Validators,
};

/// The longest header value read; longer ones are refused as malformed.
pub const MAX_HEADER_VALUE: usize = 4096;

/// The headers of a response that matter here, as raw values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    /// `Content-Range`.
    pub content_range: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// A parsed `Content-Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes FIRST-LAST/TOTAL` (`TOTAL` `None` for `*`).
    Bytes {
        /// First byte.
        first: u64,
        /// Last byte, inclusive.
        last: u64,
        /// The whole length, if known.
        total: Option<u64>,
    },
    /// `bytes */TOTAL`: the range could not be served (416).
    Unsatisfied {
        /// The whole length.
        total: u64,
    },
}

/// Parses a `Content-Range` value (RFC 9110, 14.4): `bytes` (any case),
/// one space, then `FIRST-LAST/TOTAL` or `*/TOTAL` in decimal, `TOTAL`
/// possibly `*`. `None` for anything else, `FIRST > LAST`, `LAST >=
/// TOTAL`, or a number past `u64`.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    if value.len() > MAX_HEADER_VALUE {
        return None;
    }
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim().split_once('/')?;
    let total = match total {
        "*" => None,
        total => Some(decimal(total)?),
    };
    if range == "*" {
        return total.map(|total| ContentRange::Unsatisfied { total });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last) = (decimal(first)?, decimal(last)?);
    if first > last || total.is_some_and(|total| last >= total) {
        return None;
    }
    Some(ContentRange::Bytes { first, last, total })
}

/// A decimal number of ASCII digits only (at most 20), as headers write
/// them.
pub fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A validator as kept: printable ASCII, at most [`MAX_VALIDATOR_LEN`]
/// bytes, or nothing.
pub fn validator(value: Option<&str>) -> Option<String> {
    let value = value?.trim();
    let fits = !value.is_empty()
        && value.len() <= MAX_VALIDATOR_LEN
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    fits.then(|| value.to_owned())
}

/// The validators of a response.
pub fn validators(headers: &ResponseHeaders) -> Validators {
    Validators {
        etag: validator(headers.etag.as_deref()),
        last_modified: validator(headers.last_modified.as_deref()),
    }
}

/// What a response to a range request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The range asked, `len` bytes of body to read.
    Range {
        /// Its validators.
        validators: Validators,
        /// Body bytes to read.
        len: u64,
    },
    /// A redirect to this `Location` (not resolved yet).
    Redirect(String),
    /// Not the range: what it means.
    Failed(MirrorFailure),
}

/// A range request for `range` (end exclusive) of an artifact of
/// `artifact_bytes`, for `chunk`: what the answer `status` with `headers`
/// means. Pure: the rules of `docs/swarm.md`, "Mirrors".
pub fn classify(
    status: u16,
    headers: &ResponseHeaders,
    range: &Range<u64>,
    artifact_bytes: u64,
    chunk: u32,
) -> Verdict {
    let fault = |fault| Verdict::Failed(MirrorFailure::Fault(fault));
    let asked = (range.start, range.end.saturating_sub(1));
    let got = || {
        let text = headers
            .content_range
            .as_deref()
            .unwrap_or("no Content-Range");
        text.chars().take(80).collect::<String>()
    };
    match status {
        206 => {
            if headers
                .content_type
                .as_deref()
                .is_some_and(|kind| kind.trim().to_ascii_lowercase().starts_with("multipart/"))
            {
                return fault(MirrorFault::UnaskedRange {
                    chunk,
                    asked_start: asked.0,
                    asked_end: asked.1,
                    got: "multipart/byteranges".into(),
                });
            }
            let Some(ContentRange::Bytes { first, last, total }) = headers
                .content_range
                .as_deref()
                .and_then(parse_content_range)
            else {
                return fault(MirrorFault::UnaskedRange {
                    chunk,
                    asked_start: asked.0,
                    asked_end: asked.1,
                    got: got(),
                });
            };
            if let Some(total) = total
                && total != artifact_bytes
            {
                return fault(MirrorFault::OtherLength {
                    expected: artifact_bytes,
                    got: total,
                });
            }
            if (first, last) != asked {
                return fault(MirrorFault::UnaskedRange {
                    chunk,
                    asked_start: asked.0,
                    asked_end: asked.1,
                    got: got(),
                });
            }
            let len = last - first + 1;
            if let Some(length) = &headers.content_length
                && decimal(length.trim()) != Some(len)
            {
                return fault(MirrorFault::UnaskedRange {
                    chunk,
                    asked_start: asked.0,
                    asked_end: asked.1,
                    got: format!("{} with Content-Length {}", got(), shorten(length)),
                });
            }
            Verdict::Range {
                validators: validators(headers),
                len,
            }
        }
        200 => {
            // The whole file: the range asked only when it is the whole
            // file (an artifact of one chunk); else `Range` was ignored.
            let length = headers
                .content_length
                .as_deref()
                .and_then(|l| decimal(l.trim()));
            if let Some(length) = length
                && length != artifact_bytes
            {
                return fault(MirrorFault::OtherLength {
                    expected: artifact_bytes,
                    got: length,
                });
            }
            if range.start == 0 && range.end == artifact_bytes && length == Some(artifact_bytes) {
                return Verdict::Range {
                    validators: validators(headers),
                    len: artifact_bytes,
                };
            }
            fault(MirrorFault::IgnoredRange { chunk })
        }
        301 | 302 | 303 | 307 | 308 => match &headers.location {
            Some(location) if location.len() <= MAX_HEADER_VALUE => {
                Verdict::Redirect(location.trim().to_owned())
            }
            _ => Verdict::Failed(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
        },
        416 => match headers
            .content_range
            .as_deref()
            .and_then(parse_content_range)
        {
            Some(ContentRange::Unsatisfied { total }) if total != artifact_bytes => {
                fault(MirrorFault::OtherLength {
                    expected: artifact_bytes,
                    got: total,
                })
            }
            _ => Verdict::Failed(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
        },
        408 | 425 | 429 | 500..=599 => {
            Verdict::Failed(MirrorFailure::Trouble(MirrorTrouble::Status { status }))
        }
        _ => Verdict::Failed(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// What a response to a plain `GET` of a small file (the chunk list) is.
pub fn classify_whole(
    status: u16,
    headers: &ResponseHeaders,
) -> Result<Option<String>, MirrorFailure> {
    match status {
        200 => Ok(None),
        301 | 302 | 303 | 307 | 308 => match &headers.location {
            Some(location) if location.len() <= MAX_HEADER_VALUE => {
                Ok(Some(location.trim().to_owned()))
            }
            _ => Err(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
        },
        408 | 425 | 429 | 500..=599 => {
            Err(MirrorFailure::Trouble(MirrorTrouble::Status { status }))
        }
        _ => Err(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 4 << 20;

    fn partial(range: &str) -> ResponseHeaders {
        ResponseHeaders {
            content_range: Some(range.into()),
            etag: Some("\"abc\"".into()),
            ..ResponseHeaders::default()
        }
    }

    #[test]
    fn content_range_parses_what_servers_send_and_nothing_else() {
        assert_eq!(
            parse_content_range("bytes 0-1023/4194304"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 1023,
                total: Some(4_194_304)
            })
        );
        assert_eq!(
            parse_content_range("BYTES 5-5/*"),
            Some(ContentRange::Bytes {
                first: 5,
                last: 5,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */100"),
            Some(ContentRange::Unsatisfied { total: 100 })
        );
        for bad in [
            "",
            "bytes",
            "bytes ",
            "bytes 0-1023",
            "bytes 10-5/100",
            "bytes 0-100/100",
            "bytes -1-5/100",
            "bytes 0-+5/100",
            "bytes 0x0-5/100",
            "bytes 0-5/",
            "bytes */*",
            "items 0-5/100",
            "bytes 0-99999999999999999999999/9",
            "bytes 0-5/100, 10-20/100",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(parse_content_range(&"9".repeat(5000)), None);
    }

    #[test]
    fn the_range_asked_is_a_range_and_names_its_validators() {
        let verdict = classify(
            206,
            &partial("bytes 1048576-2097151/4194304"),
            &(1 << 20..2 << 20),
            SIZE,
            1,
        );
        assert_eq!(
            verdict,
            Verdict::Range {
                validators: Validators {
                    etag: Some("\"abc\"".into()),
                    last_modified: None
                },
                len: 1 << 20
            }
        );
        // A total of `*` is no lie.
        assert!(matches!(
            classify(206, &partial("bytes 0-1048575/*"), &(0..1 << 20), SIZE, 0),
            Verdict::Range { .. }
        ));
    }

    #[test]
    fn each_lie_is_named() {
        let range = 1 << 20..2 << 20;
        let fault = |verdict| match verdict {
            Verdict::Failed(MirrorFailure::Fault(fault)) => fault,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            fault(classify(
                206,
                &partial("bytes 0-1048575/4194304"),
                &range,
                SIZE,
                1
            )),
            MirrorFault::UnaskedRange {
                chunk: 1,
                asked_start: 1048576,
                asked_end: 2097151,
                ..
            }
        ));
        assert!(matches!(
            fault(classify(206, &ResponseHeaders::default(), &range, SIZE, 1)),
            MirrorFault::UnaskedRange { .. }
        ));
        assert_eq!(
            fault(classify(
                206,
                &partial("bytes 1048576-2097151/9999999"),
                &range,
                SIZE,
                1
            )),
            MirrorFault::OtherLength {
                expected: SIZE,
                got: 9_999_999
            }
        );
        let mut short = partial("bytes 1048576-2097151/4194304");
        short.content_length = Some("12".into());
        assert!(matches!(
            fault(classify(206, &short, &range, SIZE, 1)),
            MirrorFault::UnaskedRange { .. }
        ));
        let mut multipart = partial("bytes 1048576-2097151/4194304");
        multipart.content_type = Some("multipart/byteranges; boundary=x".into());
        assert!(matches!(
            fault(classify(206, &multipart, &range, SIZE, 1)),
            MirrorFault::UnaskedRange { .. }
        ));
        let whole = ResponseHeaders {
            content_length: Some(SIZE.to_string()),
            ..ResponseHeaders::default()
        };
        assert_eq!(
            fault(classify(200, &whole, &range, SIZE, 1)),
            MirrorFault::IgnoredRange { chunk: 1 }
        );
        let other = ResponseHeaders {
            content_length: Some("77".into()),
            ..ResponseHeaders::default()
        };
        assert_eq!(
            fault(classify(200, &other, &range, SIZE, 1)),
            MirrorFault::OtherLength {
                expected: SIZE,
                got: 77
            }
        );
        assert_eq!(
            fault(classify(416, &partial("bytes */512"), &range, SIZE, 1)),
            MirrorFault::OtherLength {
                expected: SIZE,
                got: 512
            }
        );
    }

    #[test]
    fn a_one_chunk_artifact_may_come_whole() {
        let whole = ResponseHeaders {
            content_length: Some("4096".into()),
            ..ResponseHeaders::default()
        };
        assert!(matches!(
            classify(200, &whole, &(0..4096), 4096, 0),
            Verdict::Range { len: 4096, .. }
        ));
    }

    #[test]
    fn statuses_split_into_passing_trouble_and_not_for_us() {
        let range = 0..1;
        let headers = ResponseHeaders::default();
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify(status, &headers, &range, SIZE, 0),
                Verdict::Failed(MirrorFailure::Trouble(MirrorTrouble::Status { status }))
            );
        }
        for status in [204, 304, 400, 401, 403, 404, 410, 416, 451] {
            assert_eq!(
                classify(status, &headers, &range, SIZE, 0),
                Verdict::Failed(MirrorFailure::Unusable(MirrorUnusable::Status { status })),
                "{status}"
            );
        }
        let moved = ResponseHeaders {
            location: Some(" https://cdn.example/x.slm ".into()),
            ..ResponseHeaders::default()
        };
        assert_eq!(
            classify(302, &moved, &range, SIZE, 0),
            Verdict::Redirect("https://cdn.example/x.slm".into())
        );
        // A redirect without a place to go is of no use.
        assert!(matches!(
            classify(307, &headers, &range, SIZE, 0),
            Verdict::Failed(MirrorFailure::Unusable(_))
        ));
    }

    #[test]
    fn validators_are_kept_only_when_printable_and_short() {
        assert_eq!(validator(Some(" W/\"x\" ")), Some("W/\"x\"".into()));
        assert_eq!(validator(Some("")), None);
        assert_eq!(validator(Some("a\u{7f}b")), None);
        assert_eq!(validator(Some("é")), None);
        assert_eq!(validator(Some(&"x".repeat(MAX_VALIDATOR_LEN + 1))), None);
        assert_eq!(validator(None), None);
    }
}
