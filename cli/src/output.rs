//! What commands print: lines for people, or one JSON object per line with
//! `--json`; progress bars only on a terminal; nothing but errors with
//! `-q`. Diagnostics go through `tracing` (see `crate::logging`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::Event;
use crate::exit::Failure;

/// A count with its noun, singular for exactly one: `1 peer`, `2 peers`,
/// `0 chunks`, `2 addresses`. For nouns whose plural adds an `s`, or an
/// `es` after s, x, sh or ch.
pub fn counted(count: impl Into<u64>, noun: &str) -> String {
    minimodel_swarm::app::words::counted(count.into(), noun)
}

/// `println!` that a closed or full stdout does not turn into a panic
/// (exit 101): the line is lost, the command goes on.
macro_rules! say_out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
/// `print!`, the same way ([`say_out`]).
macro_rules! put_out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, $($arg)*);
        let _ = stdout.flush();
    }};
}
/// `eprintln!`, the same way ([`say_out`]).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
/// `eprint!`, the same way ([`say_out`]).
macro_rules! put_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}
pub(crate) use {put_err, put_out, say_err, say_out};

/// Where a command's output goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// `--json`: events on stdout, nothing else there.
    pub json: bool,
    /// `-q`: nothing but errors (no status lines, no progress).
    pub quiet: bool,
}

/// The progress bar on stderr now, if any: lines for people and log lines
/// are printed around it, not through it.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `print` with the active progress bar (if any) cleared from the
/// terminal, and redraws the bar after.
pub fn around_bar<R>(print: impl FnOnce() -> R) -> R {
    let bar = ACTIVE_BAR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    match bar {
        Some(bar) if !bar.is_hidden() && !bar.is_finished() => bar.suspend(print),
        _ => print(),
    }
}

impl Output {
    /// Whether lines for people are shown (not `--json`, not `-q`).
    pub fn for_people(&self) -> bool {
        !self.json && !self.quiet
    }

    /// A line for people (stdout), unless `--json` or `-q`.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.for_people() {
            // A closed stdout (`| head`) ends nothing: no panic, no error.
            around_bar(|| {
                let _ = writeln!(std::io::stdout().lock(), "{}", line.as_ref());
            });
        }
    }

    /// A status line for people on stderr (progress off a terminal, what
    /// a running node does), unless `--json` or `-q`.
    pub fn status(&self, line: impl AsRef<str>) {
        if self.for_people() {
            around_bar(|| say_err!("{}", line.as_ref()));
        }
    }

    /// A JSON event (stdout), only with `--json`.
    pub fn event(&self, event: &Event) {
        if !self.json {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (a pipe whose reader left) is not worth a panic.
        let _ = serde_json::to_writer(&mut stdout, event);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }

    /// Reports a failure the way the mode asks for (also under `-q`).
    pub fn failure(&self, failure: &Failure) {
        self.failure_exiting(failure, failure.exit as i32);
    }

    /// [`Output::failure`] for a process that exits `code` instead of the
    /// failure's own.
    pub fn failure_exiting(&self, failure: &Failure, code: i32) {
        if self.json {
            self.event(&Event::Error {
                exit_code: code,
                error: describe(&failure.error),
                hint: failure.hint.clone(),
            });
        } else {
            // A closed stderr is no reason to panic either.
            around_bar(|| {
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "error: {}", describe(&failure.error));
                if let Some(hint) = &failure.hint {
                    let _ = writeln!(stderr, "hint: {hint}");
                }
            });
        }
    }

    /// Whether live progress may be drawn on stderr: a terminal, and
    /// output for people.
    pub fn draws_progress(&self) -> bool {
        self.for_people() && std::io::stderr().is_terminal()
    }

    /// A byte progress bar on stderr for local work (hashing, checking),
    /// hidden unless [`Output::draws_progress`]. It fits 80 columns.
    pub fn byte_progress(&self, total: u64, message: &str) -> ProgressBar {
        if !self.draws_progress() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>9} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        activate(&bar);
        bar
    }

    /// A one-line live display on stderr whose whole text the caller sets
    /// (the fetch progress line), or `None` unless
    /// [`Output::draws_progress`].
    pub fn live_line(&self) -> Option<ProgressBar> {
        if !self.draws_progress() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        activate(&bar);
        Some(bar)
    }
}

/// Makes `bar` the one that printing goes around.
fn activate(bar: &ProgressBar) {
    *ACTIVE_BAR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(bar.clone());
}

/// The width of the terminal on stderr, in columns, if it is one.
pub fn terminal_width() -> Option<usize> {
    console::Term::stderr()
        .size_checked()
        .map(|(_rows, columns)| usize::from(columns))
}

/// An error and its causes on one line, `outer: inner: innermost`, leaving
/// out a cause whose text the line already holds (libraries differ on
/// whether a message repeats its source).
pub fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer says: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn causes_already_in_the_line_are_not_repeated() {
        let error = anyhow::Error::new(Repeats(std::io::Error::other("disk gone")))
            .context("cannot verify x.slm");
        assert_eq!(
            describe(&error),
            "cannot verify x.slm: outer says: disk gone"
        );
    }

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(counted(1u32, "peer"), "1 peer");
        assert_eq!(counted(0u32, "peer"), "0 peers");
        assert_eq!(counted(2u32, "address"), "2 addresses");
        assert_eq!(counted(1u32, "address"), "1 address");
        assert_eq!(counted(2u64, "bad chunk"), "2 bad chunks");
        assert_eq!(counted(1u64, "downloading peer"), "1 downloading peer");
    }
}
