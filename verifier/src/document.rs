//! What a file on disk holds, read from its first bytes: one of the
//! project's documents (named by its `format`), an `.slm` artifact, a chunk
//! list, or something else. A command that writes a document replaces an
//! existing file only when it holds the same kind of document, at the same
//! version or an older one ([`Document::may_be_replaced_by`]): a manifest
//! written over the model, a receipt over the manifest, a signed manifest
//! over the secret key that signed it or an unsigned manifest over a signed
//! one would lose what cannot be made again.
//!
//! Total on any bytes: a head that is not UTF-8, cut mid-line or mid-JSON
//! is at worst [`Document::Other`].

use crate::slm::MAGIC;

/// How many bytes of a file [`Document::sniff`] reads: the largest
/// manifest ([`crate::manifest::MAX_MANIFEST_LEN`]), whose comment
/// lines may come before its `format` line; the other documents name
/// their format in their first line.
pub const HEAD_BYTES: usize = crate::manifest::MAX_MANIFEST_LEN;

/// The lines a chunk list is recognised by (it has no header).
const CHUNK_LIST_LINES: usize = 4;

/// What a file holds, as far as its first [`HEAD_BYTES`] tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// Nothing at all.
    Empty,
    /// An `.slm` artifact (its magic bytes).
    Slm,
    /// A text or JSON document naming its format (`format: NAME` after
    /// any `#` comment lines, or a JSON object's top-level `"format"`).
    Format(String),
    /// A chunk list: lines of 64 lowercase hex digits (a file of such
    /// lines that minimodel did not write, one random key in hex say, is
    /// told from one only by where it is).
    ChunkList,
    /// Anything else.
    Other,
}

impl Document {
    /// What `head` (a file's first bytes, at most [`HEAD_BYTES`] of them
    /// needed) holds.
    pub fn sniff(head: &[u8]) -> Self {
        if head.is_empty() {
            return Self::Empty;
        }
        if head.starts_with(&MAGIC) {
            return Self::Slm;
        }
        let head = &head[..head.len().min(HEAD_BYTES)];
        let text = String::from_utf8_lossy(head);
        if let Some(format) = text_format(&text).or_else(|| json_format(head, &text)) {
            return Self::Format(format);
        }
        if is_chunk_list(&text) {
            return Self::ChunkList;
        }
        Self::Other
    }

    /// Whether a file holding `self` may be replaced by `new`: when it is
    /// empty, or both are documents of one format family (the format's
    /// name without its version) and `new`'s version is not older (a
    /// signed `minimodel-manifest-v1` replaces an unsigned
    /// `minimodel-manifest-v0`, never the other way), or both are chunk
    /// lists.
    pub fn may_be_replaced_by(&self, new: &Document) -> bool {
        match (self, new) {
            (Self::Empty, _) => true,
            (Self::Format(old), Self::Format(new)) => {
                family(old) == family(new) && version(new) >= version(old)
            }
            (Self::ChunkList, Self::ChunkList) => true,
            _ => false,
        }
    }

    /// The kind in words, for a message ("a .slm artifact").
    pub fn describe(&self) -> String {
        match self {
            Self::Empty => "nothing".into(),
            Self::Slm => "a .slm artifact".into(),
            Self::Format(format) => format!("a {format} document"),
            Self::ChunkList => "a chunk list".into(),
            Self::Other => "a file of another kind".into(),
        }
    }
}

/// A format's name without its version suffix (`-v` and digits).
pub fn family(format: &str) -> &str {
    split_version(format).0
}

/// A format's version (0 without one; saturated past `u32::MAX`).
fn version(format: &str) -> u32 {
    split_version(format).1.bytes().fold(0u32, |v, b| {
        v.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    })
}

/// A format's name and its version's digits (empty without one).
fn split_version(format: &str) -> (&str, &str) {
    match format.rfind("-v") {
        Some(at)
            if at + 2 < format.len() && format[at + 2..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (&format[..at], &format[at + 2..])
        }
        _ => (format, ""),
    }
}

/// The first line that is neither blank nor a `#` comment, when it is
/// `format: NAME`.
fn text_format(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))?;
    let name = line.strip_prefix("format:")?.trim();
    is_name(name).then(|| name.to_string())
}

/// A JSON object's top-level `"format"` value: read from the whole object
/// when the head holds it, else (a head cut short of its end) when
/// `"format"` is the object's first key, as every document minimodel
/// writes has it.
fn json_format(head: &[u8], text: &str) -> Option<String> {
    let body = text.trim_start().strip_prefix('{')?;
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(head) {
        let name = object.get("format")?.as_str()?;
        return is_name(name).then(|| name.to_string());
    }
    let rest = body.trim_start().strip_prefix("\"format\"")?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    is_name(name).then(|| name.to_string())
}

/// A format name as the project writes them: a short run of lowercase
/// letters, digits and dashes.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether the text's first whole lines (up to [`CHUNK_LIST_LINES`]) are
/// each 64 lowercase hex digits, and there is at least one.
fn is_chunk_list(text: &str) -> bool {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => text,
    };
    let mut lines = 0;
    for line in complete.lines().take(CHUNK_LIST_LINES) {
        if !crate::chunk_list::is_list_line(line.as_bytes()) {
            return false;
        }
        lines += 1;
    }
    lines > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(name: &str) -> Document {
        Document::Format(name.into())
    }

    #[test]
    fn documents_are_known_by_their_format() {
        let cases: &[(&[u8], Document)] = &[
            (b"", Document::Empty),
            (b"\x7fMINISLM\x00\x01rest", Document::Slm),
            (
                b"format: minimodel-manifest-v0\nmodel-id: tiny\n",
                format("minimodel-manifest-v0"),
            ),
            (
                b"# minimodel publisher secret key: whoever holds this file signs manifests as you.\n# Keep it private.\nformat: minimodel-secret-key-v1\nkey-id: mmk1\n",
                format("minimodel-secret-key-v1"),
            ),
            (
                b"{\n  \"format\": \"minimodel-receipt-v0\",\n  \"model_id\": \"tiny\"",
                format("minimodel-receipt-v0"),
            ),
            (
                b"{\"model_id\":\"tiny\",\"format\" : \"minimodel-peer-offer-v1\"}",
                format("minimodel-peer-offer-v1"),
            ),
            (
                b"{\"kind\": \"format\", \"format\": \"minimodel-receipt-v0\"}",
                format("minimodel-receipt-v0"),
            ),
            // Cut short: the first key decides.
            (
                b"{\n  \"format\": \"minimodel-import-request-v0\",\n  \"offers\": [",
                format("minimodel-import-request-v0"),
            ),
            (
                b"c4a667352a6b7b6481668b36546d973a9b70d93457c5069354884b09bc4a2c94\n23d2e7a64d665325cf1da06d5ec484ca2932db84da64f3c268eb3b040f15e7b9\n",
                Document::ChunkList,
            ),
            // Cut mid-line: the whole lines decide.
            (
                b"c4a667352a6b7b6481668b36546d973a9b70d93457c5069354884b09bc4a2c94\n23d2e7a6",
                Document::ChunkList,
            ),
        ];
        for (head, expected) in cases {
            assert_eq!(
                &Document::sniff(head),
                expected,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn anything_else_is_other() {
        let cases: &[&[u8]] = &[
            b"hello, these are my notes\n",
            b"\xff\xfe\x00garbage",
            b"format:\n",
            b"format: Not A Name\n",
            b"model-id: tiny\nformat: minimodel-manifest-v0\n",
            b"{\"format\": 7}",
            b"{\"format\": \"minimodel-receipt-v0",
            b"{\"x\": {\"format\": \"minimodel-receipt-v0\"}, \"y\": 1}",
            b"{\"x\": {\"format\": \"minimodel-receipt-v0\"}, \"y\": [",
            b"[\"format\", \"minimodel-receipt-v0\"]",
            b"C4A667352A6B7B6481668B36546D973A9B70D93457C5069354884B09BC4A2C94\n",
            b"c4a667352a6b7b6481668b36546d973a9b70d93457c5069354884b09bc4a2c9\n",
            b"\x7fMINISL",
        ];
        for head in cases {
            assert_eq!(
                Document::sniff(head),
                Document::Other,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn only_the_same_kind_replaces_a_document() {
        let manifest0 = format("minimodel-manifest-v0");
        let manifest1 = format("minimodel-manifest-v1");
        let secret = format("minimodel-secret-key-v1");
        let receipt = format("minimodel-receipt-v0");
        assert!(manifest0.may_be_replaced_by(&manifest1));
        assert!(!manifest1.may_be_replaced_by(&manifest0));
        assert!(receipt.may_be_replaced_by(&receipt));
        assert!(Document::Empty.may_be_replaced_by(&manifest0));
        assert!(Document::ChunkList.may_be_replaced_by(&Document::ChunkList));
        assert!(!secret.may_be_replaced_by(&manifest1));
        assert!(!manifest0.may_be_replaced_by(&receipt));
        assert!(!Document::Slm.may_be_replaced_by(&manifest0));
        assert!(!Document::Slm.may_be_replaced_by(&Document::Slm));
        assert!(!Document::Other.may_be_replaced_by(&receipt));
        assert!(!Document::ChunkList.may_be_replaced_by(&manifest0));
        assert!(!manifest0.may_be_replaced_by(&Document::Other));
    }

    #[test]
    fn a_family_is_the_format_without_its_version() {
        assert_eq!(family("minimodel-manifest-v1"), "minimodel-manifest");
        assert_eq!(family("minimodel-peer-offer-v12"), "minimodel-peer-offer");
        assert_eq!(family("minimodel-v"), "minimodel-v");
        assert_eq!(family("minimodel-vx"), "minimodel-vx");
        assert_eq!(family("plain"), "plain");
        assert_eq!(version("minimodel-manifest-v12"), 12);
        assert_eq!(version("plain"), 0);
        assert_eq!(version("x-v99999999999999999999"), u32::MAX);
    }

    #[test]
    fn a_manifest_is_known_after_as_many_comments_as_it_may_hold() {
        let comment = b"# a comment line of a manifest, as long as a reader likes\n";
        let mut text = comment.repeat((HEAD_BYTES - 64) / comment.len());
        text.extend_from_slice(b"format: minimodel-manifest-v0\n");
        assert!(text.len() <= HEAD_BYTES);
        assert_eq!(Document::sniff(&text), format("minimodel-manifest-v0"));
        // Past the largest manifest, nothing is read.
        let mut long = b"# a comment\n".repeat(HEAD_BYTES);
        long.extend_from_slice(b"format: minimodel-manifest-v0\n");
        assert_eq!(Document::sniff(&long), Document::Other);
    }
}
