//! The API token: 32 random bytes as 64 lowercase hex digits, made once
//! (by `minimodel companion token`, or the first start) into `LIBRARY/token`, mode
//! 0600 (an ACL for the user alone on Windows), and read only when it is a
//! regular file of ours that group and others cannot read
//! ([`minimodel_swarm::platform::check_owner_only`]). Every API request carries it in
//! `Authorization: Bearer <token>`; it is compared in constant time.

use std::io::{self, Write};
use std::path::Path;

use minimodel_swarm::platform::{self, PrivacyProblem, PrivateOpen};

use crate::library::{LibraryDir, LibraryError, read_own_file};

/// The token's length in hex digits.
pub const TOKEN_LEN: usize = 64;

/// A token, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Token, LibraryError> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
            |_| LibraryError::Io {
                path: "token".into(),
                source: io::Error::other("the system random number generator failed"),
            },
        )?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Parses a token's text (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<Token> {
        let text = text.trim();
        (text.len() == TOKEN_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Token(text.to_owned()))
    }

    /// The text, to put in a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is this token, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if offered.len() != mine.len() {
            return false;
        }
        mine.iter()
            .zip(offered)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Reads the library's token; `None` when there is none yet.
    pub fn read(library: &LibraryDir) -> Result<Option<Token>, LibraryError> {
        let path = library.token_path();
        let Some(bytes) = read_own_file(&path, 1024)? else {
            return Ok(None);
        };
        let privacy = platform::open_no_follow(&path)
            .map_err(platform::OpenRefusal::into_io)
            .and_then(|file| platform::check_owner_only(&file))
            .map_err(|source| LibraryError::Io {
                path: path.clone(),
                source,
            })?;
        match privacy {
            Ok(()) => {}
            Err(PrivacyProblem::OpenToOthers(access)) => {
                return Err(LibraryError::Unsafe {
                    path: path.clone(),
                    problem: format!(
                        "{access}, which lets others read the API token; {}",
                        access.fix(&path)
                    ),
                });
            }
            Err(PrivacyProblem::ForeignOwner { owner, .. }) => {
                return Err(LibraryError::Unsafe {
                    path: path.clone(),
                    problem: format!("belongs to another user ({owner})"),
                });
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        Token::parse(&text).map(Some).ok_or(LibraryError::State {
            path,
            reason: format!("not a token ({TOKEN_LEN} lowercase hex digits)"),
        })
    }

    /// The library's token, made now (mode 0600, never replacing a file)
    /// when there is none.
    pub fn read_or_create(library: &LibraryDir) -> Result<(Token, bool), LibraryError> {
        if let Some(token) = Token::read(library)? {
            return Ok((token, false));
        }
        let token = Token::generate()?;
        write_new(&library.token_path(), &token)?;
        Ok((token, true))
    }
}

/// Writes a new token file, mode 0600, refusing to replace anything.
fn write_new(path: &Path, token: &Token) -> Result<(), LibraryError> {
    let io_error = |source| LibraryError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = platform::open_private(path, PrivateOpen::CreateNew).map_err(io_error)?;
    writeln!(file, "{}", token.0).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let library = LibraryDir::open(temp.path()).unwrap();
        let (token, made) = Token::read_or_create(&library).unwrap();
        assert!(made);
        let file = std::fs::File::open(library.token_path()).unwrap();
        assert_eq!(platform::check_owner_only(&file).unwrap(), Ok(()));
        let (again, made) = Token::read_or_create(&library).unwrap();
        assert!(!made);
        assert_eq!(again, token);
        assert_eq!(token.expose().len(), TOKEN_LEN);
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn a_token_others_can_read_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let library = LibraryDir::open(temp.path()).unwrap();
        Token::read_or_create(&library).unwrap();
        platform::open_to_others(&library.token_path()).unwrap();
        let error = Token::read(&library).unwrap_err();
        let fix = if cfg!(windows) { "icacls" } else { "chmod 600" };
        assert!(error.to_string().contains(fix), "{error}");
    }

    #[test]
    fn matching_needs_the_whole_token() {
        let token = Token::parse(&"ab".repeat(32)).unwrap();
        assert!(token.matches("ab".repeat(32).as_bytes()));
        assert!(!token.matches("ab".repeat(31).as_bytes()));
        assert!(!token.matches(format!("{}ac", "ab".repeat(31)).as_bytes()));
        assert!(!token.matches(b""));
        for bad in ["", "xyz", &"AB".repeat(32), &"ab".repeat(33)] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
    }
}
