//! The secret and public key files (`docs/signing.md`, section 3).
//!
//! ```text
//! # minimodel publisher secret key: whoever holds this file signs as you.
//! format: minimodel-secret-key-v1
//! key-id: mmk1...
//! public-key: mmpk1...
//! secret-key: mmsk1...
//! ```
//!
//! A public key file has the same lines but `format:
//! minimodel-public-key-v1` and no `secret-key`. The key id and public key
//! of a secret key file are checked against the secret key, the key id of
//! a public key file against its key: a file whose lines disagree was
//! edited or damaged, and is refused.
//!
//! The files' protection on disk (a secret key file readable by its owner
//! only) is the binary's business: this module reads and writes text.

use super::keys::{PublicKey, SecretKey};
use super::lines::{
    Line, TextFileError, TextFileErrorKind, bad_value, error, fixed_fields, read_lines,
};
use crate::signing::PublisherKeyId;

/// The `format` of a secret key file.
pub const SECRET_KEY_FORMAT: &str = "minimodel-secret-key-v1";
/// The `format` of a public key file.
pub const PUBLIC_KEY_FORMAT: &str = "minimodel-public-key-v1";
/// Largest key file read: the lines take about 200 bytes, the rest is room
/// for comments.
pub const MAX_KEY_FILE_LEN: usize = 4096;

/// The text of a secret key file.
pub fn secret_key_file(key: &SecretKey) -> String {
    let public = key.public_key();
    format!(
        "# minimodel publisher secret key: whoever holds this file signs manifests as you.\n\
         # Keep it private (mode 0600) and keep a copy somewhere safe.\n\
         format: {SECRET_KEY_FORMAT}\n\
         key-id: {}\n\
         public-key: {public}\n\
         secret-key: {}\n",
        public.key_id(),
        key.to_text()
    )
}

/// The text of a public key file.
pub fn public_key_file(key: &PublicKey) -> String {
    format!(
        "# minimodel publisher public key: give it to the people who fetch what you sign.\n\
         format: {PUBLIC_KEY_FORMAT}\n\
         key-id: {}\n\
         public-key: {key}\n",
        key.key_id()
    )
}

/// Reads a secret key file.
pub fn read_secret_key_file(bytes: &[u8]) -> Result<SecretKey, TextFileError> {
    let lines = read_lines(bytes, MAX_KEY_FILE_LEN, SECRET_KEY_FORMAT)?;
    secret_from_lines(&lines)
}

/// Reads a public key file.
pub fn read_public_key_file(bytes: &[u8]) -> Result<PublicKey, TextFileError> {
    let lines = read_lines(bytes, MAX_KEY_FILE_LEN, PUBLIC_KEY_FORMAT)?;
    public_from_lines(&lines)
}

/// What a key file holds, for a reader that takes either kind.
#[derive(Debug, Clone)]
pub enum KeyFile {
    /// A secret key file.
    Secret(SecretKey),
    /// A public key file.
    Public(PublicKey),
}

/// Reads a key file of either kind, told by its `format` line.
pub fn read_key_file(bytes: &[u8]) -> Result<KeyFile, TextFileError> {
    match read_lines(bytes, MAX_KEY_FILE_LEN, SECRET_KEY_FORMAT) {
        Ok(lines) => secret_from_lines(&lines).map(KeyFile::Secret),
        Err(TextFileError {
            kind: TextFileErrorKind::UnsupportedFormat { found, .. },
            ..
        }) if found == PUBLIC_KEY_FORMAT => read_public_key_file(bytes).map(KeyFile::Public),
        Err(TextFileError {
            line,
            kind: TextFileErrorKind::UnsupportedFormat { found, .. },
        }) => Err(error(
            line,
            TextFileErrorKind::BadValue {
                key: "format",
                reason: format!(
                    "{found:?} is not a key file format ({SECRET_KEY_FORMAT} or {PUBLIC_KEY_FORMAT})"
                ),
            },
        )),
        Err(other) => Err(other),
    }
}

fn secret_from_lines(lines: &[Line<'_>]) -> Result<SecretKey, TextFileError> {
    let [
        (id_line, key_id),
        (public_line, public),
        (secret_line, secret),
    ] = fixed_fields(
        lines,
        SECRET_KEY_FORMAT,
        ["key-id", "public-key", "secret-key"],
    )?;
    let key_id: PublisherKeyId = key_id
        .parse()
        .map_err(|e| bad_value(id_line, "key-id", e))?;
    let public: PublicKey = public
        .parse()
        .map_err(|e| bad_value(public_line, "public-key", e))?;
    let secret =
        SecretKey::from_text(secret).map_err(|e| bad_value(secret_line, "secret-key", e))?;
    if secret.public_key() != public {
        return Err(error(
            Some(public_line),
            TextFileErrorKind::Mismatch(
                "public-key is not the public key of secret-key: the file was edited or damaged"
                    .to_owned(),
            ),
        ));
    }
    check_key_id(&public, key_id, id_line)?;
    Ok(secret)
}

fn public_from_lines(lines: &[Line<'_>]) -> Result<PublicKey, TextFileError> {
    let [(id_line, key_id), (public_line, public)] =
        fixed_fields(lines, PUBLIC_KEY_FORMAT, ["key-id", "public-key"])?;
    let key_id: PublisherKeyId = key_id
        .parse()
        .map_err(|e| bad_value(id_line, "key-id", e))?;
    let public: PublicKey = public
        .parse()
        .map_err(|e| bad_value(public_line, "public-key", e))?;
    check_key_id(&public, key_id, id_line)?;
    Ok(public)
}

fn check_key_id(
    public: &PublicKey,
    key_id: PublisherKeyId,
    line: usize,
) -> Result<(), TextFileError> {
    if public.key_id() != key_id {
        return Err(error(
            Some(line),
            TextFileErrorKind::Mismatch(format!(
                "key-id is {key_id} but the key's id is {}: the file was edited or damaged",
                public.key_id()
            )),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretKey {
        SecretKey::from_seed(&[3; 32])
    }

    #[test]
    fn key_files_round_trip() {
        let key = secret();
        let text = secret_key_file(&key);
        let read = read_secret_key_file(text.as_bytes()).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        assert_eq!(read.to_text(), key.to_text());
        let public = public_key_file(&key.public_key());
        assert_eq!(
            read_public_key_file(public.as_bytes()).unwrap(),
            key.public_key()
        );
        assert!(matches!(
            read_key_file(text.as_bytes()),
            Ok(KeyFile::Secret(_))
        ));
        assert!(matches!(
            read_key_file(public.as_bytes()),
            Ok(KeyFile::Public(p)) if p == key.public_key()
        ));
    }

    fn replaced(text: &str, key: &str, value: &str) -> String {
        text.lines()
            .map(|line| {
                if line.starts_with(&format!("{key}: ")) {
                    format!("{key}: {value}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect()
    }

    #[test]
    fn edited_or_damaged_key_files_are_refused() {
        let key = secret();
        let other = SecretKey::from_seed(&[4; 32]);
        let text = secret_key_file(&key);
        let refuse = |text: &str| read_secret_key_file(text.as_bytes()).unwrap_err();

        let swapped = replaced(&text, "public-key", &other.public_key().to_string());
        assert!(matches!(
            refuse(&swapped).kind,
            TextFileErrorKind::Mismatch(_)
        ));
        let wrong_id = replaced(&text, "key-id", &other.public_key().key_id().to_string());
        assert!(matches!(
            refuse(&wrong_id).kind,
            TextFileErrorKind::Mismatch(_)
        ));
        let bad_secret = replaced(&text, "secret-key", "mmsk1abc");
        assert!(matches!(
            refuse(&bad_secret).kind,
            TextFileErrorKind::BadValue {
                key: "secret-key",
                ..
            }
        ));
        let public_in_secret = replaced(&text, "secret-key", &key.public_key().to_string());
        assert!(matches!(
            refuse(&public_in_secret).kind,
            TextFileErrorKind::BadValue {
                key: "secret-key",
                ..
            }
        ));
        let missing: String = text
            .lines()
            .filter(|l| !l.starts_with("secret-key"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            refuse(&missing).kind,
            TextFileErrorKind::MissingKey { key: "secret-key" }
        );
        let extra = format!("{text}comment: hello\n");
        assert!(matches!(
            refuse(&extra).kind,
            TextFileErrorKind::UnknownKey { .. }
        ));
        let public = public_key_file(&key.public_key());
        assert!(matches!(
            refuse(&public).kind,
            TextFileErrorKind::UnsupportedFormat { .. }
        ));
        let huge = format!("{text}#{}\n", "x".repeat(MAX_KEY_FILE_LEN));
        assert!(matches!(
            refuse(&huge).kind,
            TextFileErrorKind::TooLarge { .. }
        ));
        let other_format = "format: minimodel-manifest-v1\n";
        assert!(matches!(
            read_key_file(other_format.as_bytes()).unwrap_err().kind,
            TextFileErrorKind::BadValue { key: "format", .. }
        ));
        let public_wrong_id = replaced(&public, "key-id", &other.public_key().key_id().to_string());
        assert!(matches!(
            read_public_key_file(public_wrong_id.as_bytes())
                .unwrap_err()
                .kind,
            TextFileErrorKind::Mismatch(_)
        ));
    }
}
