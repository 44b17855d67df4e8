//! The reader shared by the small text files of `docs/signing.md` (key
//! files, the keyring, rotation statements): the line rules of manifests
//! (UTF-8, LF only, `#` comments, blank lines, `key: value` with one space,
//! no control, bidirectional or separator character), a size cap checked
//! before anything is decoded, and a `format` line as the first entry.

use std::fmt;

use crate::manifest::is_forbidden_char;

/// Why a key file, a keyring or a rotation statement is refused. Displays
/// as `line 3: ...` when the error belongs to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFileError {
    /// 1-based line, when the error belongs to one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: TextFileErrorKind,
}

impl fmt::Display for TextFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for TextFileError {}

/// The rule a key file, keyring or rotation statement broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextFileErrorKind {
    /// Larger than its format allows.
    #[error("the file is larger than {max} bytes, the limit of its format")]
    TooLarge {
        /// Bytes read of it: more than `max`, and no more than the reader
        /// took (`max + 1` when read with a limit), not its whole size.
        len: usize,
        /// The limit of its format.
        max: usize,
    },
    /// A line that is not UTF-8.
    #[error("the line is not valid UTF-8")]
    InvalidUtf8,
    /// A CR: these files use LF line endings only.
    #[error("the line holds a carriage return (CR); use LF line endings only")]
    CarriageReturn,
    /// A control, bidirectional-formatting or separator character.
    #[error("the line holds the character {found:?}, which is refused")]
    ForbiddenCharacter {
        /// The character.
        found: char,
    },
    /// Not blank, a comment or `key: value`.
    #[error("malformed line: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The first entry is not `format: ...`.
    #[error("the first entry must be `format: {expected}`")]
    MissingFormat {
        /// The format expected.
        expected: &'static str,
    },
    /// `format` names another format.
    #[error("format {found:?} is not {expected}")]
    UnsupportedFormat {
        /// What the file says.
        found: String,
        /// What this reader reads.
        expected: &'static str,
    },
    /// A key the format does not define.
    #[error("unknown key {key:?}; {format} does not define it")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The format.
        format: &'static str,
    },
    /// A key given twice.
    #[error("key {key} given twice (first on line {first_line})")]
    DuplicateKey {
        /// The key.
        key: &'static str,
        /// Where it was given first.
        first_line: usize,
    },
    /// A required key is absent.
    #[error("required key {key} is missing")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A value its key does not accept.
    #[error("{key}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// Values that contradict each other (a public key that is not the
    /// secret key's, a key id that is not the key's).
    #[error("{0}")]
    Mismatch(String),
}

/// One `key: value` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) line: usize,
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
}

/// A line of a file: an entry, or text kept as it is (comments and blank
/// lines, which a rewrite keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Entry(Entry<'a>),
    Other(&'a str),
}

pub(crate) fn error(line: Option<usize>, kind: TextFileErrorKind) -> TextFileError {
    TextFileError { line, kind }
}

/// Every line of `bytes` (at most `max_len` of them), the first entry being
/// `format: <format>`.
pub(crate) fn read_lines<'a>(
    bytes: &'a [u8],
    max_len: usize,
    format: &'static str,
) -> Result<Vec<Line<'a>>, TextFileError> {
    if bytes.len() > max_len {
        return Err(error(
            None,
            TextFileErrorKind::TooLarge {
                len: bytes.len(),
                max: max_len,
            },
        ));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = Vec::new();
    let mut seen_format = false;
    for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        let fail = |kind| error(Some(line), kind);
        if raw.contains(&b'\r') {
            return Err(fail(TextFileErrorKind::CarriageReturn));
        }
        let text = std::str::from_utf8(raw).map_err(|_| fail(TextFileErrorKind::InvalidUtf8))?;
        if let Some(found) = text.chars().find(|c| is_forbidden_char(*c)) {
            return Err(fail(TextFileErrorKind::ForbiddenCharacter { found }));
        }
        if text.is_empty() || text.starts_with('#') {
            lines.push(Line::Other(text));
            continue;
        }
        let entry = split_entry(text, line)?;
        if !seen_format {
            if entry.key != "format" {
                return Err(fail(TextFileErrorKind::MissingFormat { expected: format }));
            }
            if entry.value != format {
                return Err(fail(TextFileErrorKind::UnsupportedFormat {
                    found: entry.value.to_owned(),
                    expected: format,
                }));
            }
            seen_format = true;
        } else if entry.key == "format" {
            return Err(fail(TextFileErrorKind::DuplicateKey {
                key: "format",
                first_line: first_entry_line(&lines),
            }));
        }
        lines.push(Line::Entry(entry));
    }
    if !seen_format {
        return Err(error(
            None,
            TextFileErrorKind::MissingFormat { expected: format },
        ));
    }
    Ok(lines)
}

fn first_entry_line(lines: &[Line<'_>]) -> usize {
    lines
        .iter()
        .find_map(|line| match line {
            Line::Entry(entry) => Some(entry.line),
            Line::Other(_) => None,
        })
        .unwrap_or(1)
}

/// `key: value`, with the rules of manifest lines.
fn split_entry(text: &str, line: usize) -> Result<Entry<'_>, TextFileError> {
    let malformed = |reason| error(Some(line), TextFileErrorKind::Malformed { reason });
    if text.starts_with(char::is_whitespace) {
        return Err(malformed(
            "the line starts with whitespace; write `key: value` from the first column",
        ));
    }
    let Some((key, rest)) = text.split_once(':') else {
        return Err(malformed("expected `key: value`"));
    };
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(malformed(
            "a key is made of lowercase letters a-z, digits and '-', followed directly by ':'",
        ));
    }
    let Some(value) = rest.strip_prefix(' ') else {
        return Err(malformed("expected exactly one space after ':'"));
    };
    if value.is_empty() {
        return Err(malformed("the value is empty"));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(malformed(
            "the value starts or ends with whitespace (exactly one space follows ':')",
        ));
    }
    Ok(Entry { line, key, value })
}

/// The entries of `lines` when each of `keys` (the format line aside)
/// must appear exactly once and no other key may: their values, in the
/// order of `keys`, each with its line.
pub(crate) fn fixed_fields<'a, const N: usize>(
    lines: &[Line<'a>],
    format: &'static str,
    keys: [&'static str; N],
) -> Result<[(usize, &'a str); N], TextFileError> {
    let mut found: [Option<(usize, &'a str)>; N] = [None; N];
    for line in lines {
        let Line::Entry(entry) = line else { continue };
        if entry.key == "format" {
            continue;
        }
        let Some(index) = keys.iter().position(|key| *key == entry.key) else {
            return Err(error(
                Some(entry.line),
                TextFileErrorKind::UnknownKey {
                    key: entry.key.to_owned(),
                    format,
                },
            ));
        };
        if let Some((first_line, _)) = found[index] {
            return Err(error(
                Some(entry.line),
                TextFileErrorKind::DuplicateKey {
                    key: keys[index],
                    first_line,
                },
            ));
        }
        found[index] = Some((entry.line, entry.value));
    }
    let mut out = [(0, ""); N];
    for (index, slot) in found.into_iter().enumerate() {
        out[index] =
            slot.ok_or_else(|| error(None, TextFileErrorKind::MissingKey { key: keys[index] }))?;
    }
    Ok(out)
}

/// A [`TextFileErrorKind::BadValue`] on `line`.
pub(crate) fn bad_value(
    line: usize,
    key: &'static str,
    reason: impl fmt::Display,
) -> TextFileError {
    error(
        Some(line),
        TextFileErrorKind::BadValue {
            key,
            reason: reason.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "test-format-v1";

    fn kind(text: &[u8]) -> (Option<usize>, TextFileErrorKind) {
        let error = read_lines(text, 200, FORMAT).unwrap_err();
        (error.line, error.kind)
    }

    #[test]
    fn comments_blank_lines_and_entries_are_read() {
        let text = b"# hello\n\nformat: test-format-v1\na: 1\n# x\nb: two words";
        let lines = read_lines(text, 200, FORMAT).unwrap();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], Line::Other("# hello"));
        let fields = fixed_fields(&lines, FORMAT, ["b", "a"]).unwrap();
        assert_eq!(fields, [(6, "two words"), (4, "1")]);
    }

    #[test]
    fn every_line_rule_is_enforced_with_its_line() {
        assert!(matches!(
            kind(&[b'#'; 201]),
            (None, TextFileErrorKind::TooLarge { len: 201, max: 200 })
        ));
        assert_eq!(
            kind(b"format: test-format-v1\r\n"),
            (Some(1), TextFileErrorKind::CarriageReturn)
        );
        assert_eq!(
            kind(b"format: test-format-v1\na: \xff\n"),
            (Some(2), TextFileErrorKind::InvalidUtf8)
        );
        assert_eq!(
            kind("format: test-format-v1\na: x\u{202e}y\n".as_bytes()),
            (
                Some(2),
                TextFileErrorKind::ForbiddenCharacter { found: '\u{202e}' }
            )
        );
        for bad in [
            "format: test-format-v1\n a: 1\n",
            "format: test-format-v1\na 1\n",
            "format: test-format-v1\nA: 1\n",
            "format: test-format-v1\na:1\n",
            "format: test-format-v1\na:  1\n",
            "format: test-format-v1\na: 1 \n",
            "format: test-format-v1\na: \n",
        ] {
            assert!(
                matches!(
                    kind(bad.as_bytes()),
                    (Some(2), TextFileErrorKind::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            kind(b"a: 1\nformat: test-format-v1\n"),
            (
                Some(1),
                TextFileErrorKind::MissingFormat { expected: FORMAT }
            )
        );
        assert_eq!(
            kind(b"# only a comment\n"),
            (None, TextFileErrorKind::MissingFormat { expected: FORMAT })
        );
        assert!(matches!(
            kind(b"format: test-format-v2\n"),
            (Some(1), TextFileErrorKind::UnsupportedFormat { .. })
        ));
        assert_eq!(
            kind(b"\nformat: test-format-v1\nformat: test-format-v1\n"),
            (
                Some(3),
                TextFileErrorKind::DuplicateKey {
                    key: "format",
                    first_line: 2
                }
            )
        );
    }

    #[test]
    fn fixed_fields_refuse_unknown_duplicate_and_missing_keys() {
        let read = |text: &str| {
            let lines = read_lines(text.as_bytes(), 200, FORMAT).unwrap();
            fixed_fields(&lines, FORMAT, ["a", "b"]).unwrap_err()
        };
        assert!(matches!(
            read("format: test-format-v1\na: 1\nc: 3\nb: 2\n"),
            TextFileError {
                line: Some(3),
                kind: TextFileErrorKind::UnknownKey { .. }
            }
        ));
        assert_eq!(
            read("format: test-format-v1\na: 1\nb: 2\na: 1\n"),
            error(
                Some(4),
                TextFileErrorKind::DuplicateKey {
                    key: "a",
                    first_line: 2
                }
            )
        );
        assert_eq!(
            read("format: test-format-v1\nb: 2\n"),
            error(None, TextFileErrorKind::MissingKey { key: "a" })
        );
    }
}
