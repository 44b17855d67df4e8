//! Words every front end shows the same way: sizes and rates for people.
//! One place, so that the CLI, the companion and its page say the same
//! thing of the same number.

/// A size for people: `64.0 MiB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 peer`, `3 peers`, `2 addresses`: a count and its noun, plural
/// beyond one (`es` after s, x, sh and ch).
pub fn counted(count: u64, noun: &str) -> String {
    let es = ["s", "x", "sh", "ch"].iter().any(|end| noun.ends_with(end));
    match count {
        1 => format!("1 {noun}"),
        count if es => format!("{count} {noun}es"),
        count => format!("{count} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_their_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(counted(1, "peer"), "1 peer");
        assert_eq!(counted(0, "peer"), "0 peers");
        assert_eq!(counted(3, "address"), "3 addresses");
    }
}
