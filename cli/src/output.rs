//! What commands print: lines for people, or one JSON object per line with
//! `--json`; progress bars only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::exit::Failure;

/// A count with its noun, singular for exactly one: `1 peer`, `2 peers`,
/// `0 chunks`. For nouns whose plural adds an `s`.
pub fn counted(count: impl Into<u64>, noun: &str) -> String {
    match count.into() {
        1 => format!("1 {noun}"),
        count => format!("{count} {noun}s"),
    }
}

/// Where a command's output goes.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// A line for people (stdout), unless `--json`.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.json {
            println!("{}", line.as_ref());
        }
    }

    /// A JSON event (stdout), only with `--json`. `event` names it.
    pub fn event(&self, event: &str, mut fields: Value) {
        if !self.json {
            return;
        }
        if let Value::Object(map) = &mut fields {
            map.insert("event".to_owned(), Value::from(event));
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (a pipe whose reader left) is not worth a panic.
        let _ = serde_json::to_writer(&mut stdout, &fields);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }

    /// A JSON object that carries its own `event` field, only with `--json`.
    pub fn event_value(&self, value: Value) {
        if !self.json {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, &value);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }

    /// Reports a failure the way the mode asks for.
    pub fn failure(&self, failure: &Failure) {
        let code = failure.exit as i32;
        if self.json {
            self.event(
                "error",
                serde_json::json!({
                    "exit_code": code,
                    "error": describe(&failure.error),
                    "hint": failure.hint,
                }),
            );
        } else {
            eprintln!("error: {}", describe(&failure.error));
            if let Some(hint) = &failure.hint {
                eprintln!("hint: {hint}");
            }
        }
    }

    /// A byte progress bar on stderr, hidden unless stderr is a terminal
    /// and the output is for people.
    pub fn byte_progress(&self, total: u64, message: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
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
        assert_eq!(counted(2u64, "bad chunk"), "2 bad chunks");
        assert_eq!(counted(1u64, "downloading peer"), "1 downloading peer");
    }
}
