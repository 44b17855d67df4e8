//! Download progress that tells the truth: what is verified in all and in
//! this run, one rate (verified bytes per second over the last few
//! seconds), an ETA from the bytes still missing at that rate, and the
//! peers. The figures come from the node's progress reports and from what
//! opening the download took over (resumed bytes); the formatting is pure
//! and tested here.

use std::collections::VecDeque;
use std::time::Duration;

use crate::output::counted;
use crate::units::human_bytes;

/// The widest progress line on a terminal (narrower when the terminal is).
pub const MAX_WIDTH: usize = 80;

/// How far back the rate looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The shortest span a rate is told from: less says more about timing
/// jitter than about the transfer.
const MIN_RATE_SPAN: Duration = Duration::from_millis(900);

/// Verified bytes over the last [`RATE_WINDOW`]: the recent average rate.
#[derive(Debug, Default)]
pub struct RateWindow {
    /// (time since start, verified bytes), oldest first.
    samples: VecDeque<(Duration, u64)>,
}

impl RateWindow {
    /// A window that starts with the run (at time zero, with the bytes
    /// verified before it), so that the first rate told is the run's
    /// average so far rather than unknown.
    pub fn starting_with(verified_bytes: u64) -> Self {
        let mut window = Self::default();
        window.record(Duration::ZERO, verified_bytes);
        window
    }

    /// Records the verified bytes at `at` (time since any fixed start).
    pub fn record(&mut self, at: Duration, verified_bytes: u64) {
        if self.samples.back().is_some_and(|&(last, _)| at < last) {
            return;
        }
        self.samples.push_back((at, verified_bytes));
        // Keep one sample at or before the window's start, so the span
        // covers the whole window once there is that much history.
        while self.samples.len() > 2 && self.samples[1].0 + RATE_WINDOW <= at {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window, `None` while it spans too little
    /// time to tell.
    pub fn rate(&self) -> Option<f64> {
        let (&(first_at, first), &(last_at, last)) = (self.samples.front()?, self.samples.back()?);
        let span = last_at.checked_sub(first_at)?;
        if span < MIN_RATE_SPAN {
            return None;
        }
        Some(last.saturating_sub(first) as f64 / span.as_secs_f64())
    }
}

/// What one progress line shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressView {
    /// Verified bytes, resumed ones included.
    pub verified_bytes: u64,
    /// Size of the artifact.
    pub total_bytes: u64,
    /// Of the verified bytes, those taken over from earlier runs.
    pub resumed_bytes: u64,
    /// Recent rate in bytes per second, when known.
    pub rate: Option<f64>,
    /// Peers we download from.
    pub peers: usize,
}

impl ProgressView {
    /// Bytes verified in this run.
    pub fn this_run(&self) -> u64 {
        self.verified_bytes.saturating_sub(self.resumed_bytes)
    }

    /// Bytes still missing.
    pub fn remaining(&self) -> u64 {
        self.total_bytes.saturating_sub(self.verified_bytes)
    }

    /// Time to go at the recent rate: zero when nothing is missing, `None`
    /// when the rate is unknown or nothing moves.
    pub fn eta(&self) -> Option<Duration> {
        let remaining = self.remaining();
        if remaining == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate.filter(|rate| rate.is_finite() && *rate >= 1.0)?;
        let seconds = (remaining as f64 / rate).ceil();
        // Beyond a hundred days an ETA means nothing.
        (seconds < 100.0 * 86400.0).then(|| Duration::from_secs(seconds as u64))
    }

    /// Verified share in whole percent, never 100 before the end.
    pub fn percent(&self) -> u64 {
        if self.total_bytes == 0 || self.verified_bytes >= self.total_bytes {
            return 100;
        }
        (self.verified_bytes as u128 * 100 / self.total_bytes as u128) as u64
    }
}

/// An ETA for people: `42s`, `3m07s`, `2h05m`, `4d03h`, `--` when unknown.
pub fn format_eta(eta: Option<Duration>) -> String {
    let Some(eta) = eta else {
        return "--".to_owned();
    };
    let seconds = eta.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

/// A rate for people: `12.8 MiB/s`, `-- B/s` when unknown.
pub fn format_rate(rate: Option<f64>) -> String {
    match rate {
        Some(rate) if rate.is_finite() && rate >= 0.0 => format!("{}/s", human_bytes(rate as u64)),
        _ => "-- B/s".to_owned(),
    }
}

/// The figures of a line, from the most to the least telling; a narrow
/// line drops from the end of each.
fn parts(view: &ProgressView) -> (String, String, String, String, String) {
    let done = format!(
        "{}/{}",
        human_bytes(view.verified_bytes),
        human_bytes(view.total_bytes)
    );
    let this_run = if view.resumed_bytes > 0 {
        format!(" ({} this run)", human_bytes(view.this_run()))
    } else {
        String::new()
    };
    (
        done,
        this_run,
        format_rate(view.rate),
        format!("eta {}", format_eta(view.eta())),
        counted(view.peers as u64, "peer"),
    )
}

/// The progress line on a terminal, at most `width` columns (and at most
/// [`MAX_WIDTH`]): a bar when there is room, the verified bytes (and those
/// of this run after a resume), the rate, the ETA and the peers.
pub fn terminal_line(view: &ProgressView, width: usize) -> String {
    let width = width.min(MAX_WIDTH);
    let (done, this_run, rate, eta, peers) = parts(view);
    let percent = format!("{:>3}%", view.percent());
    // From the richest to the leanest; the first that fits wins.
    let candidates = [
        format!("{percent} {done}{this_run} {rate} {eta} {peers}"),
        format!("{percent} {done}{this_run} {rate} {eta}"),
        format!("{percent} {done} {rate} {eta}"),
        format!("{percent} {rate} {eta}"),
        format!("{percent} {eta}"),
        percent.clone(),
    ];
    let text = candidates
        .into_iter()
        .find(|text| text.chars().count() <= width)
        .unwrap_or_else(|| percent.chars().take(width).collect());
    // A bar in front, in what is left: 10 to 30 cells and its brackets,
    // in steps of 5 so that it does not twitch as the figures change width.
    let room = width.saturating_sub(text.chars().count() + 1);
    if room < 12 {
        return text;
    }
    let cells = ((room - 2) / 5 * 5).clamp(10, 30);
    let filled = (cells as u128 * view.verified_bytes.min(view.total_bytes) as u128
        / view.total_bytes.max(1) as u128) as usize;
    let mut bar = String::with_capacity(cells + 2);
    bar.push('[');
    bar.extend(std::iter::repeat_n('=', filled));
    if filled < cells {
        bar.push('>');
        bar.extend(std::iter::repeat_n(' ', cells - filled - 1));
    }
    bar.push(']');
    format!("{bar} {text}")
}

/// The status line off a terminal (every few seconds on stderr, like
/// aria2's): every figure, no bar, no width limit.
pub fn status_line(view: &ProgressView) -> String {
    let (done, this_run, rate, eta, peers) = parts(view);
    format!(
        "progress: {}% {done}{this_run}, {rate}, eta {}, {peers}",
        view.percent(),
        eta.trim_start_matches("eta ")
    )
}

/// Whether a status line is due off a terminal, `since_start` into the
/// run: `every` after the last one (`last`, also since the start); the
/// first once the rate is known (a line that says `-- B/s, eta --` tells a
/// log nothing), or `every` into the run if it is not known by then.
pub fn status_due(
    last: Option<Duration>,
    since_start: Duration,
    rate_known: bool,
    every: Duration,
) -> bool {
    match last {
        Some(last) => since_start.saturating_sub(last) >= every,
        None => rate_known || since_start >= every,
    }
}

/// The average rate of a run: `bytes` over `elapsed`.
pub fn average_rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(0.001)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn view(
        verified: u64,
        total: u64,
        resumed: u64,
        rate: Option<f64>,
        peers: usize,
    ) -> ProgressView {
        ProgressView {
            verified_bytes: verified,
            total_bytes: total,
            resumed_bytes: resumed,
            rate,
            peers,
        }
    }

    #[test]
    fn the_rate_is_the_recent_average_and_unknown_at_first() {
        let mut window = RateWindow::default();
        assert_eq!(window.rate(), None);
        window.record(Duration::ZERO, 10 * MIB);
        window.record(Duration::from_millis(500), 11 * MIB);
        assert_eq!(window.rate(), None, "half a second is too little");
        window.record(Duration::from_secs(1), 12 * MIB);
        assert_eq!(window.rate(), Some(2.0 * MIB as f64));
        // Resumed bytes are the starting point, not part of the rate.
        for second in 2..=20 {
            window.record(Duration::from_secs(second), (10 + 2 * second) * MIB);
        }
        assert_eq!(window.rate(), Some(2.0 * MIB as f64));
        // A stall shows within the window, and the old pace is forgotten.
        for second in 21..=26 {
            window.record(Duration::from_secs(second), 50 * MIB);
        }
        assert_eq!(window.rate(), Some(0.0));
        assert_eq!(window.samples.front().unwrap().0, Duration::from_secs(21));
    }

    #[test]
    fn a_window_that_starts_with_the_run_tells_its_average_once_it_spans_enough() {
        // The first report comes half a second in, the next a second in.
        let mut started = RateWindow::starting_with(10 * MIB);
        started.record(Duration::from_millis(500), 12 * MIB);
        assert_eq!(started.rate(), None, "half a second is too little");
        started.record(Duration::from_millis(1000), 14 * MIB);
        assert_eq!(started.rate(), Some(4.0 * MIB as f64));
        // Without the start, the same reports tell no rate yet.
        let mut unseeded = RateWindow::default();
        unseeded.record(Duration::from_millis(500), 12 * MIB);
        unseeded.record(Duration::from_millis(1000), 14 * MIB);
        assert_eq!(unseeded.rate(), None);
    }

    #[test]
    fn the_first_status_line_waits_for_a_rate_and_the_next_ones_come_every_interval() {
        let every = Duration::from_secs(5);
        let ms = Duration::from_millis;
        // The first report, half a second in, has no rate: no line yet.
        assert!(!status_due(None, ms(500), false, every));
        // A second in the rate is known: the first line.
        assert!(status_due(None, ms(1000), true, every));
        // A rate never known (nothing verified for a while) still gets a
        // line at the interval.
        assert!(status_due(None, ms(5000), false, every));
        // After a line, the next one comes `every` later, rate or not.
        assert!(!status_due(Some(ms(1000)), ms(5900), true, every));
        assert!(status_due(Some(ms(1000)), ms(6000), false, every));
    }

    #[test]
    fn the_eta_comes_from_the_missing_bytes_at_the_recent_rate() {
        let v = view(9 * MIB, 12 * MIB, 8 * MIB, Some(MIB as f64), 1);
        assert_eq!(v.eta(), Some(Duration::from_secs(3)));
        assert_eq!(v.this_run(), MIB);
        assert_eq!(format_eta(v.eta()), "3s");
        assert_eq!(
            view(12 * MIB, 12 * MIB, 0, None, 0).eta(),
            Some(Duration::ZERO)
        );
        assert_eq!(view(MIB, 12 * MIB, 0, None, 1).eta(), None);
        assert_eq!(view(MIB, 12 * MIB, 0, Some(0.0), 1).eta(), None);
        assert_eq!(view(MIB, 12 * MIB, 0, Some(f64::NAN), 1).eta(), None);
        assert_eq!(view(0, u64::MAX, 0, Some(1.0), 1).eta(), None, "absurd");
    }

    #[test]
    fn etas_read_like_clocks() {
        assert_eq!(format_eta(None), "--");
        assert_eq!(format_eta(Some(Duration::ZERO)), "0s");
        assert_eq!(format_eta(Some(Duration::from_secs(59))), "59s");
        assert_eq!(format_eta(Some(Duration::from_secs(187))), "3m07s");
        assert_eq!(format_eta(Some(Duration::from_secs(7500))), "2h05m");
        assert_eq!(
            format_eta(Some(Duration::from_secs(4 * 86400 + 3 * 3600))),
            "4d03h"
        );
        assert_eq!(format_rate(None), "-- B/s");
        assert_eq!(format_rate(Some(853.7 * 1024.0)), "853.7 KiB/s");
    }

    #[test]
    fn after_a_resume_the_line_shows_both_totals_and_a_finite_eta() {
        // A resume: 35 chunks resumed, then fetching.
        let v = view(
            9 * MIB + 768 * 1024,
            12 * MIB,
            35 * 256 * 1024,
            Some(853.7 * 1024.0),
            1,
        );
        let line = terminal_line(&v, 80);
        assert!(line.chars().count() <= 80, "{line}");
        assert!(
            line.contains("9.8 MiB/12.0 MiB (1.0 MiB this run)"),
            "{line}"
        );
        assert!(line.contains("853.7 KiB/s eta 3s 1 peer"), "{line}");
        assert_eq!(line.matches("/s").count(), 1, "one rate: {line}");
        // The bar starts from the resumed part, not from zero.
        let filled = line.matches('=').count();
        let cells = line.find(']').unwrap() - 1;
        assert!(filled * 100 / cells >= 70, "{line}");
    }

    #[test]
    fn lines_fit_any_width_and_never_exceed_80_columns() {
        let big = view(
            1023 * (1 << 30) + 1,
            1023 * (1 << 30) + 999 * MIB,
            512 * (1 << 30),
            Some(1000.0 * MIB as f64),
            999,
        );
        let small = view(0, 16 * 1024, 0, None, 0);
        for v in [big, small] {
            for width in [200, 120, 80, 60, 40, 30, 20, 10, 4, 1] {
                let line = terminal_line(&v, width);
                let columns = line.chars().count();
                assert!(columns <= width.min(80), "{width}: {columns} {line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
        let wide = terminal_line(&big, 200);
        assert!(wide.contains("999 peers"), "{wide}");
        assert!(wide.contains("this run"), "{wide}");
        assert!(
            terminal_line(&big, 40).contains("eta"),
            "{}",
            terminal_line(&big, 40)
        );
    }

    #[test]
    fn a_fresh_download_does_not_say_this_run() {
        let v = view(3 * MIB, 12 * MIB, 0, None, 2);
        let line = terminal_line(&v, 80);
        assert!(line.starts_with('['), "{line}");
        assert!(
            line.contains(" 25% 3.0 MiB/12.0 MiB -- B/s eta -- 2 peers"),
            "{line}"
        );
        assert!(!line.contains("this run"), "{line}");
    }

    #[test]
    fn the_status_line_has_every_figure() {
        let v = view(6 * MIB, 12 * MIB, 2 * MIB, Some(2.0 * MIB as f64), 3);
        assert_eq!(
            status_line(&v),
            "progress: 50% 6.0 MiB/12.0 MiB (4.0 MiB this run), 2.0 MiB/s, eta 3s, 3 peers"
        );
        assert_eq!(view(12 * MIB - 1, 12 * MIB, 0, None, 0).percent(), 99);
    }

    #[test]
    fn the_average_rate_is_bytes_over_time() {
        assert_eq!(
            average_rate(10 * MIB, Duration::from_secs(5)),
            2.0 * MIB as f64
        );
        assert!(average_rate(1, Duration::ZERO).is_finite());
    }
}
