//! Sizes (`64MiB`) and rates (`8MiB`, per second) on the command line.
//!
//! Parsing goes through `parse-size`: units are case-insensitive and may
//! follow the number with or without a space (`8MiB`, `8mib`, `8 MiB`), the
//! `B` is optional, and fractions (`1.5GiB`) round to the nearest byte.
//! `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024; `kB`, `MB`, `GB`, `TB`
//! (and a bare `k`, `M`, `G`, `T`) are powers of 1000, as SI and disk
//! makers use them, so `64MB` is 64,000,000 bytes and `64MiB` 67,108,864.
//!
//! Durations (`--give-up-after 30s`) go through `humantime`: a number and
//! a unit, `30s`, `5min`, `1h`, `1h 30min`, `250ms`.

use std::time::Duration;

/// What every refusal ends with.
const HOW_TO_WRITE_A_SIZE: &str = "write it like 64MiB, 8 MiB, 1.5GiB or 4096 \
     (KiB, MiB, GiB, TiB are powers of 1024; kB, MB, GB, TB powers of 1000)";

/// Parses a byte size; a rate is the same with an optional `/s`. The
/// messages do not repeat the text: clap already shows it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let size = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    parse_size::parse_size(size).map_err(|error| match error {
        parse_size::Error::PosOverflow => "too large: a size is at most 16 EiB".to_owned(),
        _ => format!("not a size; {HOW_TO_WRITE_A_SIZE}"),
    })
}

/// Parses a rate cap (`--max-upload`, `--max-download`): a size per
/// second, at least [`MIN_RATE_CAP`](minimodel_swarm::node::MIN_RATE_CAP).
/// Zero is no cap at all but reads as one, and a few bytes a second
/// fetch nothing in any useful time: both are refused here, before
/// anything is written.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let rate = parse_size(text)?;
    if rate < minimodel_swarm::node::MIN_RATE_CAP {
        return Err(
            "too low: a cap is at least 1KiB per second (leave it out for none)".to_owned(),
        );
    }
    Ok(rate)
}

/// Parses a count of peers (`--max-peers`): at least one.
pub fn parse_peer_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("a node needs at least one peer".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err("not a whole number".to_owned()),
    }
}

/// What every refused duration ends with.
const HOW_TO_WRITE_A_DURATION: &str = "write it like 30s, 5min, 1h or 1h 30min";

/// The longest duration accepted: a year. Longer is a typo, and it keeps
/// every deadline computed from it far from `Instant` overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const TOO_LONG: &str = "too long: a duration is at most 365 days (365d)";

/// Parses a duration like `30s`, `5min`, `1h` or `1h 30min` (at least a
/// millisecond, at most a year). The messages do not repeat the text:
/// clap already shows it.
// Wired to `--give-up-after` and friends by the commands that take them.
#[allow(dead_code)]
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative; {HOW_TO_WRITE_A_DURATION}"
        ));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|error| match error {
        humantime::DurationError::NumberExpected(_) | humantime::DurationError::Empty => {
            format!("not a duration; {HOW_TO_WRITE_A_DURATION}")
        }
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("not a duration: the number needs a unit; {HOW_TO_WRITE_A_DURATION}")
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("'{unit}' is not a unit of time; {HOW_TO_WRITE_A_DURATION}")
        }
        humantime::DurationError::NumberOverflow => TOO_LONG.to_owned(),
        humantime::DurationError::InvalidCharacter(_) => {
            format!("not a duration; {HOW_TO_WRITE_A_DURATION}")
        }
    })?;
    if duration < Duration::from_millis(1) {
        return Err(format!("must be at least 1ms; {HOW_TO_WRITE_A_DURATION}"));
    }
    if duration > MAX_DURATION {
        return Err(TOO_LONG.to_owned());
    }
    Ok(duration)
}

/// A size formatted for people: `64.0 MiB` (the words every front end
/// uses, [`minimodel_swarm::app::words`]).
pub use minimodel_swarm::app::words::human_bytes;

/// A size exactly, as a person would have written it, for echoing one they
/// gave: in the unit, binary or decimal, that divides it into the smallest
/// whole number, else in bytes (`1 KiB`, `64 MB`, `1000 KiB`, `1500 B`).
pub fn exact_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 8] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "kB"),
    ];
    UNITS
        .iter()
        .filter(|(unit, _)| bytes != 0 && bytes.is_multiple_of(*unit))
        .min_by_key(|(unit, _)| bytes / unit)
        .map_or_else(
            || format!("{bytes} B"),
            |(unit, name)| format!("{} {name}", bytes / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("1kB"), Ok(1_000));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("8MiB/s"), Ok(8 << 20));
    }

    #[test]
    fn caps_of_nothing_or_a_few_bytes_are_refused() {
        assert_eq!(parse_rate("8MiB"), Ok(8 << 20));
        assert_eq!(parse_rate("1KiB/s"), Ok(1024));
        for text in ["0", "0MiB", "1", "1023", "0.5KiB"] {
            let error = parse_rate(text).unwrap_err();
            assert!(error.contains("at least 1KiB"), "{text}: {error}");
        }
        assert!(parse_rate("fast").unwrap_err().contains("not a size"));
        assert_eq!(parse_peer_count("1"), Ok(1));
        assert_eq!(parse_peer_count(" 200 "), Ok(200));
        assert!(parse_peer_count("0").unwrap_err().contains("at least one"));
        assert!(parse_peer_count("-1").is_err());
        assert!(parse_peer_count("many").is_err());
    }

    #[test]
    fn units_are_case_insensitive_with_or_without_a_space() {
        for text in ["8MiB", "8mib", "8MIB", "8 MiB", " 8 MiB ", "8 mib/s", "8Mi"] {
            assert_eq!(parse_size(text), Ok(8 << 20), "{text}");
        }
        for text in ["64MB", "64mb", "64 MB", "64M", "64 m"] {
            assert_eq!(parse_size(text), Ok(64_000_000), "{text}");
        }
        assert_eq!(parse_size("256 KiB"), Ok(256 << 10));
        assert_eq!(parse_size("100 B"), Ok(100));
    }

    #[test]
    fn fractions_round_to_the_nearest_byte() {
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5 KiB"), Ok(512));
        assert_eq!(parse_size("1.0005kB"), Ok(1_001));
    }

    #[test]
    fn bad_sizes_say_how_to_write_one() {
        for text in [
            "MiB",
            "",
            "5 parsecs",
            "12 bananas",
            "-1",
            "8 MiB/h",
            "0x10",
            "8//s",
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(
                error.contains("not a size; write it like 64MiB"),
                "{text}: {error}"
            );
        }
        assert_eq!(
            parse_size("12 bananas").unwrap_err(),
            format!("not a size; {HOW_TO_WRITE_A_SIZE}")
        );
        for text in ["99999999999TiB", "16EiB", "18446744073709551616"] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains("too large"), "{text}: {error}");
        }
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn durations_parse_with_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 1h 30min "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2days"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for (text, expected) in [
            ("", "not a duration"),
            ("   ", "not a duration"),
            ("30", "not a duration"),
            ("s", "not a duration"),
            ("-5s", "cannot be negative"),
            ("-1h", "cannot be negative"),
            ("5 parsecs", "'parsecs' is not a unit of time"),
            ("5x", "'x' is not a unit of time"),
            ("0s", "at least 1ms"),
            ("0ms", "at least 1ms"),
            ("500us", "at least 1ms"),
            ("366d", "too long"),
            ("99999999999999999999999s", "too long"),
            ("30s!", "not a duration"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(
                error.contains("1h") || error.contains("year") || error.contains("365"),
                "{text:?}: the message says how to write one: {error}"
            );
        }
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn exact_bytes_echoes_what_was_written() {
        assert_eq!(exact_bytes(1024), "1 KiB");
        assert_eq!(exact_bytes(16 << 10), "16 KiB");
        assert_eq!(exact_bytes(64 << 20), "64 MiB");
        assert_eq!(exact_bytes(3 << 29), "1536 MiB");
        assert_eq!(exact_bytes(2 << 40), "2 TiB");
        assert_eq!(exact_bytes(1000), "1 kB");
        assert_eq!(exact_bytes(64_000_000), "64 MB");
        assert_eq!(exact_bytes(1_024_000), "1000 KiB");
        assert_eq!(exact_bytes(1500), "1500 B");
        assert_eq!(exact_bytes(100), "100 B");
        assert_eq!(exact_bytes(0), "0 B");
    }
}
