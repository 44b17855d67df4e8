//! `DIR/<model-id>.slm.mirrors`: what a download saw of its mirrors, kept
//! between runs so that a mirror whose file changed meanwhile is noticed
//! (`docs/formats.md`, "Remembered mirrors"; what is kept and compared is
//! the core's, `minimodel_node::node::RememberedMirror` and
//! `minimodel_node::mirror::compare_validators`). Advisory, as the peer
//! list is: a missing or damaged file means "nothing seen before" and
//! never stops a download (each chunk is checked all the same); it is
//! replaced at the next checkpoint.

use minimodel_node::mirror::{MAX_VALIDATOR_LEN, Validators};
use minimodel_node::node::{MAX_MIRRORS, RememberedMirror};
use minimodel_verifier::mirror_url::{MirrorUrl, Plain};
use serde::{Deserialize, Serialize};

use super::dir::SafeDir;
use super::error::ResumeError;

/// The `format` of the file.
pub const MIRRORS_FORMAT: &str = "minimodel-mirrors-v0";
/// Largest file read.
pub const MAX_MIRRORS_FILE_BYTES: u64 = 64 * 1024;
/// Most mirrors remembered.
pub const MAX_REMEMBERED_MIRRORS: usize = MAX_MIRRORS * 4;

/// Why a remembered-mirrors file is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorsFileError {
    /// Larger than [`MAX_MIRRORS_FILE_BYTES`].
    #[error("larger than {MAX_MIRRORS_FILE_BYTES} bytes")]
    TooLarge,
    /// Not JSON of the format, or an unknown field.
    #[error("not a {MIRRORS_FORMAT} file: {0}")]
    Syntax(String),
    /// Another format.
    #[error("format {0:?}, not {MIRRORS_FORMAT}")]
    Format(String),
    /// Too many entries.
    #[error("{0} mirrors; at most {MAX_REMEMBERED_MIRRORS}")]
    TooMany(usize),
    /// An entry that is not one.
    #[error("mirror {index}: {why}")]
    Mirror {
        /// Its place in the list, from 0.
        index: usize,
        /// What is wrong.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    format: String,
    mirrors: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// The file's text for `mirrors`.
pub fn mirrors_file_text(mirrors: &[RememberedMirror]) -> String {
    let body = FileBody {
        format: MIRRORS_FORMAT.to_owned(),
        mirrors: mirrors
            .iter()
            .map(|mirror| FileEntry {
                url: mirror.label.clone(),
                etag: mirror.validators.etag.clone(),
                last_modified: mirror.validators.last_modified.clone(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&body).expect("plain data serializes");
    text.push('\n');
    text
}

/// The mirrors `bytes` (a file's content) remember, checked whole: a file
/// with one bad entry is not used at all.
pub fn parse_mirrors_file(bytes: &[u8]) -> Result<Vec<RememberedMirror>, MirrorsFileError> {
    if bytes.len() as u64 > MAX_MIRRORS_FILE_BYTES {
        return Err(MirrorsFileError::TooLarge);
    }
    let body: FileBody =
        serde_json::from_slice(bytes).map_err(|e| MirrorsFileError::Syntax(e.to_string()))?;
    if body.format != MIRRORS_FORMAT {
        return Err(MirrorsFileError::Format(body.format));
    }
    if body.mirrors.len() > MAX_REMEMBERED_MIRRORS {
        return Err(MirrorsFileError::TooMany(body.mirrors.len()));
    }
    let mut mirrors: Vec<RememberedMirror> = Vec::with_capacity(body.mirrors.len());
    for (index, entry) in body.mirrors.into_iter().enumerate() {
        let bad = |why: String| MirrorsFileError::Mirror { index, why };
        // A label: a mirror URL without its query, as written.
        let url =
            MirrorUrl::parse(&entry.url, Plain::Allowed).map_err(|e| bad(format!("url: {e}")))?;
        if url.label() != entry.url {
            return Err(bad(
                "url: not a mirror's label (no query, lowercase host)".into()
            ));
        }
        if mirrors.iter().any(|mirror| mirror.label == entry.url) {
            return Err(bad(format!("{} is listed twice", entry.url)));
        }
        let validator = |name: &str, value: Option<String>| match value {
            Some(text)
                if text.is_empty()
                    || text.len() > MAX_VALIDATOR_LEN
                    || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                Err(bad(format!(
                    "{name} is empty, too long or not printable ASCII"
                )))
            }
            value => Ok(value),
        };
        let validators = Validators {
            etag: validator("etag", entry.etag)?,
            last_modified: validator("last_modified", entry.last_modified)?,
        };
        mirrors.push(RememberedMirror {
            label: entry.url,
            validators,
        });
    }
    Ok(mirrors)
}

/// Reads `name` in `dir`: `Ok(empty)` when there is none.
pub(crate) fn read_mirrors(
    dir: &SafeDir,
    name: &str,
) -> Result<Result<Vec<RememberedMirror>, MirrorsFileError>, ResumeError> {
    Ok(match dir.read(name, MAX_MIRRORS_FILE_BYTES + 1)? {
        None => Ok(Vec::new()),
        Some(bytes) => parse_mirrors_file(&bytes),
    })
}

/// Writes `mirrors` under `name` in `dir` (a whole-file write; the
/// caller's next directory sync makes it durable).
pub(crate) fn write_mirrors(
    dir: &SafeDir,
    name: &str,
    mirrors: &[RememberedMirror],
) -> Result<(), ResumeError> {
    dir.write_atomically(name, mirrors_file_text(mirrors).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(n: u8) -> RememberedMirror {
        RememberedMirror {
            label: format!("https://mirror{n}.example.org/m/tiny.slm"),
            validators: Validators {
                etag: Some(format!("W/\"{n}\"")),
                last_modified: n
                    .is_multiple_of(2)
                    .then(|| "Mon, 01 Jan 2024 00:00:00 GMT".into()),
            },
        }
    }

    #[test]
    fn a_list_reads_back_as_written() {
        let mirrors = vec![mirror(1), mirror(2)];
        let text = mirrors_file_text(&mirrors);
        assert!(
            text.starts_with("{\n  \"format\": \"minimodel-mirrors-v0\""),
            "{text}"
        );
        assert_eq!(parse_mirrors_file(text.as_bytes()), Ok(mirrors));
        assert_eq!(
            parse_mirrors_file(mirrors_file_text(&[]).as_bytes()),
            Ok(Vec::new())
        );
    }

    #[test]
    fn every_malformed_file_is_refused_with_its_reason() {
        let good: serde_json::Value =
            serde_json::from_str(&mirrors_file_text(&[mirror(1), mirror(2)])).unwrap();
        let with = |index: Option<usize>, key: &str, value: serde_json::Value| {
            let mut body = good.clone();
            match index {
                Some(i) => body["mirrors"][i][key] = value,
                None => body[key] = value,
            }
            serde_json::to_vec(&body).unwrap()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not a minimodel-mirrors-v0 file"),
            (b"{}".to_vec(), "not a minimodel-mirrors-v0 file"),
            (
                with(None, "format", "minimodel-mirrors-v9".into()),
                "format",
            ),
            (with(None, "extra", 1.into()), "unknown field"),
            (
                with(Some(0), "url", "ftp://x.org/a".into()),
                "mirror 0: url",
            ),
            (
                with(Some(0), "url", "https://a.org/m.slm?sig=1".into()),
                "not a mirror's label",
            ),
            (
                with(
                    Some(1),
                    "url",
                    "https://mirror1.example.org/m/tiny.slm".into(),
                ),
                "listed twice",
            ),
            (with(Some(0), "etag", "".into()), "etag is empty"),
            (with(Some(0), "etag", "a\u{7}b".into()), "etag is empty"),
            (
                with(Some(1), "last_modified", "x".repeat(300).into()),
                "last_modified is empty",
            ),
            (
                with(Some(0), "etag", 5.into()),
                "not a minimodel-mirrors-v0 file",
            ),
        ];
        for (bytes, says) in cases {
            let error = parse_mirrors_file(&bytes).expect_err(says).to_string();
            assert!(error.contains(says), "{error} should say {says}");
        }
        let many: Vec<RememberedMirror> = (0..=MAX_REMEMBERED_MIRRORS as u8).map(mirror).collect();
        assert_eq!(
            parse_mirrors_file(mirrors_file_text(&many).as_bytes()),
            Err(MirrorsFileError::TooMany(MAX_REMEMBERED_MIRRORS + 1))
        );
        let huge = vec![b' '; MAX_MIRRORS_FILE_BYTES as usize + 1];
        assert_eq!(parse_mirrors_file(&huge), Err(MirrorsFileError::TooLarge));
    }
}
