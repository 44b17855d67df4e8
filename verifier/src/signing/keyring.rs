//! The keyring (`docs/signing.md`, section 4): which publisher key is
//! pinned for each publisher id, how and when it was pinned.
//!
//! ```text
//! # comments and blank lines are kept when the keyring is rewritten
//! format: minimodel-keyring-v1
//! pin: example-lab mmpk1... first-use 2026-11-23T10:15:00Z
//! ```
//!
//! One pin per publisher id. A keyring is read whole and refused whole: a
//! damaged keyring is not taken for an empty one (that would turn every
//! pinned publisher into a first use).

use std::fmt;
use std::str::FromStr;

use super::keys::PublicKey;
use super::lines::{Line, TextFileError, TextFileErrorKind, bad_value, error, read_lines};
use super::rotation::CheckedRotation;
use crate::ids::PublisherId;

/// The `format` of a keyring file.
pub const KEYRING_FORMAT: &str = "minimodel-keyring-v1";
/// Largest keyring read, and written.
pub const MAX_KEYRING_LEN: usize = 1 << 20;
/// Most pins a keyring holds.
pub const MAX_PINS: usize = 4096;

/// How a key came to be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinnedBy {
    /// `first-use`: seen for the first time, and the user consented (at the
    /// prompt, or with `--yes`).
    FirstUse,
    /// `publisher-key`: the user named it with `--publisher-key`.
    PublisherKey,
    /// `key-pin`: the user pinned it with `minimodel key pin`.
    KeyPin,
    /// `rotation`: the pinned key handed over to it in a rotation
    /// statement.
    Rotation,
}

impl PinnedBy {
    /// Every way, in spec order.
    pub const ALL: [PinnedBy; 4] = [
        PinnedBy::FirstUse,
        PinnedBy::PublisherKey,
        PinnedBy::KeyPin,
        PinnedBy::Rotation,
    ];

    /// The name in the keyring.
    pub fn name(self) -> &'static str {
        match self {
            PinnedBy::FirstUse => "first-use",
            PinnedBy::PublisherKey => "publisher-key",
            PinnedBy::KeyPin => "key-pin",
            PinnedBy::Rotation => "rotation",
        }
    }

    /// How it reads in a sentence ("pinned at first use").
    pub fn describe(self) -> &'static str {
        match self {
            PinnedBy::FirstUse => "pinned at first use",
            PinnedBy::PublisherKey => "pinned with --publisher-key",
            PinnedBy::KeyPin => "pinned with minimodel key pin",
            PinnedBy::Rotation => "pinned by a key rotation",
        }
    }
}

impl fmt::Display for PinnedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PinnedBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|how| how.name() == text)
            .ok_or_else(|| format!("{text:?} is not first-use, publisher-key, key-pin or rotation"))
    }
}

/// One pin: this publisher id's manifests must be signed by this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The publisher.
    pub publisher_id: PublisherId,
    /// Its key.
    pub key: PublicKey,
    /// How it was pinned.
    pub pinned_by: PinnedBy,
    /// When, RFC 3339 UTC with second precision.
    pub pinned_at: String,
}

impl fmt::Display for Pin {
    /// The keyring line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pin: {} {} {} {}",
            self.publisher_id, self.key, self.pinned_by, self.pinned_at
        )
    }
}

/// A line of the keyring as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyringLine {
    /// A comment or a blank line, kept as written.
    Text(String),
    /// The `format` line.
    Format,
    Pin(Pin),
}

/// The pins, with the file's comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    lines: Vec<KeyringLine>,
}

/// A keyring that cannot take another pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the keyring is full ({MAX_PINS} pins or {MAX_KEYRING_LEN} bytes); forget pins you no longer need (minimodel key forget)"
)]
pub struct KeyringFull;

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new()
    }
}

impl Keyring {
    /// An empty keyring, as a new file starts.
    pub fn new() -> Keyring {
        Keyring {
            lines: vec![
                KeyringLine::Text(
                    "# minimodel keyring: the publisher key pinned for each publisher id (docs/signing.md)."
                        .to_owned(),
                ),
                KeyringLine::Text(
                    "# pin: PUBLISHER-ID PUBLIC-KEY PINNED-BY PINNED-AT".to_owned(),
                ),
                KeyringLine::Format,
            ],
        }
    }

    /// Reads a keyring file.
    pub fn parse(bytes: &[u8]) -> Result<Keyring, TextFileError> {
        let lines = read_lines(bytes, MAX_KEYRING_LEN, KEYRING_FORMAT)?;
        let mut keyring = Keyring { lines: Vec::new() };
        let mut first_lines: Vec<(PublisherId, usize)> = Vec::new();
        for line in lines {
            let entry = match line {
                Line::Other(text) => {
                    keyring.lines.push(KeyringLine::Text(text.to_owned()));
                    continue;
                }
                Line::Entry(entry) => entry,
            };
            match entry.key {
                "format" => keyring.lines.push(KeyringLine::Format),
                "pin" => {
                    let pin = parse_pin(entry.value, entry.line)?;
                    if let Some((_, first_line)) =
                        first_lines.iter().find(|(id, _)| *id == pin.publisher_id)
                    {
                        return Err(bad_value(
                            entry.line,
                            "pin",
                            format!(
                                "publisher {} is pinned twice (first on line {first_line}); keep one line",
                                pin.publisher_id
                            ),
                        ));
                    }
                    if first_lines.len() == MAX_PINS {
                        return Err(bad_value(
                            entry.line,
                            "pin",
                            format!("more than {MAX_PINS} pins"),
                        ));
                    }
                    first_lines.push((pin.publisher_id.clone(), entry.line));
                    keyring.lines.push(KeyringLine::Pin(pin));
                }
                other => {
                    return Err(error(
                        Some(entry.line),
                        TextFileErrorKind::UnknownKey {
                            key: other.to_owned(),
                            format: KEYRING_FORMAT,
                        },
                    ));
                }
            }
        }
        Ok(keyring)
    }

    /// The file's text: its lines as read, pins changed in place, new pins
    /// at the end.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            match line {
                KeyringLine::Text(comment) => text.push_str(comment),
                KeyringLine::Format => {
                    text.push_str("format: ");
                    text.push_str(KEYRING_FORMAT);
                }
                KeyringLine::Pin(pin) => text.push_str(&pin.to_string()),
            }
            text.push('\n');
        }
        text
    }

    /// Every pin, in file order.
    pub fn pins(&self) -> impl Iterator<Item = &Pin> {
        self.lines.iter().filter_map(|line| match line {
            KeyringLine::Pin(pin) => Some(pin),
            _ => None,
        })
    }

    /// The pin of `publisher_id`, if any.
    pub fn pin_of(&self, publisher_id: &PublisherId) -> Option<&Pin> {
        self.pins().find(|pin| pin.publisher_id == *publisher_id)
    }

    /// Pins `pin.key` for `pin.publisher_id`, replacing its pin if it had
    /// one (returned).
    pub fn set(&mut self, pin: Pin) -> Result<Option<Pin>, KeyringFull> {
        let existing = self.lines.iter_mut().find_map(|line| match line {
            KeyringLine::Pin(old) if old.publisher_id == pin.publisher_id => Some(old),
            _ => None,
        });
        if let Some(old) = existing {
            return Ok(Some(std::mem::replace(old, pin)));
        }
        let line_len = pin.to_string().len() + 1;
        if self.pins().count() >= MAX_PINS || self.to_text().len() + line_len > MAX_KEYRING_LEN {
            return Err(KeyringFull);
        }
        self.lines.push(KeyringLine::Pin(pin));
        Ok(None)
    }

    /// Removes the pin of `publisher_id` (returned, if it had one).
    pub fn remove(&mut self, publisher_id: &PublisherId) -> Option<Pin> {
        let index = self.lines.iter().position(
            |line| matches!(line, KeyringLine::Pin(pin) if pin.publisher_id == *publisher_id),
        )?;
        match self.lines.remove(index) {
            KeyringLine::Pin(pin) => Some(pin),
            _ => None,
        }
    }

    /// Moves every pin of the rotation's old key to its new key (pinned by
    /// rotation, at `at`): the publishers whose pin moved.
    pub fn apply_rotation(&mut self, rotation: &CheckedRotation, at: &str) -> Vec<PublisherId> {
        let mut moved = Vec::new();
        for line in &mut self.lines {
            let KeyringLine::Pin(pin) = line else {
                continue;
            };
            if pin.key == rotation.old_key() {
                pin.key = rotation.new_key();
                pin.pinned_by = PinnedBy::Rotation;
                pin.pinned_at = at.to_owned();
                moved.push(pin.publisher_id.clone());
            }
        }
        moved
    }
}

/// `PUBLISHER-ID PUBLIC-KEY PINNED-BY PINNED-AT`, single spaces.
fn parse_pin(value: &str, line: usize) -> Result<Pin, TextFileError> {
    let fields: Vec<&str> = value.split(' ').collect();
    let [publisher_id, key, pinned_by, pinned_at] = fields[..] else {
        return Err(bad_value(
            line,
            "pin",
            "expected PUBLISHER-ID PUBLIC-KEY PINNED-BY PINNED-AT, separated by single spaces",
        ));
    };
    let publisher_id: PublisherId = publisher_id
        .parse()
        .map_err(|e| bad_value(line, "pin", e))?;
    let key: PublicKey = key.parse().map_err(|e| bad_value(line, "pin", e))?;
    let pinned_by: PinnedBy = pinned_by.parse().map_err(|e| bad_value(line, "pin", e))?;
    if !is_rfc3339_second(pinned_at) {
        return Err(bad_value(
            line,
            "pin",
            format!("{pinned_at:?} is not a time like 2026-11-23T10:15:00Z"),
        ));
    }
    Ok(Pin {
        publisher_id,
        key,
        pinned_by,
        pinned_at: pinned_at.to_owned(),
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ`, a real date and time.
fn is_rfc3339_second(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && humantime::parse_rfc3339(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SecretKey;
    use crate::signing::rotation::KeyRotation;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed(&[seed; 32]).public_key()
    }

    fn pin(publisher: &str, seed: u8) -> Pin {
        Pin {
            publisher_id: publisher.parse().unwrap(),
            key: key(seed),
            pinned_by: PinnedBy::FirstUse,
            pinned_at: "2026-11-23T10:15:00Z".to_owned(),
        }
    }

    #[test]
    fn pins_are_set_replaced_removed_and_kept_with_comments() {
        let mut keyring = Keyring::new();
        assert_eq!(keyring.set(pin("acme", 1)), Ok(None));
        assert_eq!(keyring.set(pin("other", 2)), Ok(None));
        let text = format!("# mine\n{}", keyring.to_text());
        let mut read = Keyring::parse(text.as_bytes()).unwrap();
        assert_eq!(read.to_text(), text, "comments survive");
        assert_eq!(read.pin_of(&"acme".parse().unwrap()), Some(&pin("acme", 1)));
        let old = read.set(pin("acme", 3)).unwrap();
        assert_eq!(old, Some(pin("acme", 1)));
        assert_eq!(read.pins().count(), 2);
        assert_eq!(read.pins().next().unwrap().key, key(3), "replaced in place");
        assert_eq!(
            read.remove(&"other".parse().unwrap()),
            Some(pin("other", 2))
        );
        assert_eq!(read.remove(&"other".parse().unwrap()), None);
        let again = Keyring::parse(read.to_text().as_bytes()).unwrap();
        assert_eq!(again, read);
    }

    #[test]
    fn a_rotation_moves_every_pin_of_the_old_key() {
        let old = SecretKey::from_seed(&[1; 32]);
        let mut keyring = Keyring::new();
        keyring.set(pin("acme", 1)).unwrap();
        keyring.set(pin("acme-labs", 1)).unwrap();
        keyring.set(pin("other", 2)).unwrap();
        let rotation = KeyRotation::sign(&old, &key(5)).check().unwrap();
        let moved = keyring.apply_rotation(&rotation, "2026-11-24T00:00:00Z");
        assert_eq!(moved.len(), 2);
        let acme = keyring.pin_of(&"acme".parse().unwrap()).unwrap();
        assert_eq!(acme.key, key(5));
        assert_eq!(acme.pinned_by, PinnedBy::Rotation);
        assert_eq!(acme.pinned_at, "2026-11-24T00:00:00Z");
        assert_eq!(
            keyring.pin_of(&"other".parse().unwrap()).unwrap().key,
            key(2)
        );
    }

    #[test]
    fn damaged_keyrings_are_refused_with_their_line() {
        let good = {
            let mut keyring = Keyring::new();
            keyring.set(pin("acme", 1)).unwrap();
            keyring.to_text()
        };
        let refuse = |text: &str| Keyring::parse(text.as_bytes()).unwrap_err();
        let pin_line = good.lines().last().unwrap().to_owned();
        let line = good.lines().count();
        let twice = format!("{good}{pin_line}\n");
        let error = refuse(&twice);
        assert_eq!(error.line, Some(line + 1));
        assert!(error.to_string().contains("pinned twice"), "{error}");
        for bad in [
            pin_line.replace("first-use", "trusted"),
            pin_line.replace("2026-11-23T10:15:00Z", "2026-13-23T10:15:00Z"),
            pin_line.replace("2026-11-23T10:15:00Z", "2026-11-23T10:15:00.5Z"),
            pin_line.replace("acme", "../acme"),
            pin_line.replace("mmpk1", "mmpk2"),
            pin_line.replace(" first-use", "  first-use"),
            format!("{pin_line} extra"),
        ] {
            let text = good.replace(&pin_line, &bad);
            let error = refuse(&text);
            assert_eq!(error.line, Some(line), "{bad}: {error}");
            assert!(
                matches!(error.kind, TextFileErrorKind::BadValue { key: "pin", .. }),
                "{bad}: {error}"
            );
        }
        let unknown = format!("{good}revoked: {}\n", key(1));
        assert!(matches!(
            refuse(&unknown).kind,
            TextFileErrorKind::UnknownKey { .. }
        ));
        assert!(matches!(
            refuse("format: minimodel-keyring-v2\n").kind,
            TextFileErrorKind::UnsupportedFormat { .. }
        ));
        assert!(matches!(
            refuse("").kind,
            TextFileErrorKind::MissingFormat { .. }
        ));
    }

    #[test]
    fn a_full_keyring_takes_no_new_pin_but_replaces() {
        let mut keyring = Keyring::new();
        for n in 0..MAX_PINS {
            keyring.set(pin(&format!("p{n}"), 1)).unwrap();
        }
        assert_eq!(keyring.set(pin("one-more", 1)), Err(KeyringFull));
        assert!(keyring.set(pin("p7", 2)).unwrap().is_some());
        let text = keyring.to_text();
        assert!(text.len() <= MAX_KEYRING_LEN);
        let more = format!("{text}{}\n", pin("one-more", 1));
        assert!(Keyring::parse(more.as_bytes()).is_err());
    }
}
