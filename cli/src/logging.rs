//! Diagnostics through `tracing`, on stderr (never on stdout, where
//! `--json` events go), printed around the progress bar.
//!
//! | flags | shown |
//! |---|---|
//! | `-q` | errors |
//! | none | warnings and errors |
//! | `-v` | and what our crates tell (`info`): peers connecting, leaving |
//! | `-vv` | `debug` from every crate, quinn's own events included |
//! | `-vvv` | `trace` |
//!
//! `RUST_LOG` (a `tracing-subscriber` filter like `minimodel_swarm=debug`)
//! replaces the level the flags choose.

use std::io::Write;

use tracing_subscriber::EnvFilter;

use crate::output::around_bar;

/// Our crates, for `-v`.
const OUR_CRATES: [&str; 4] = [
    "minimodel",
    "minimodel_swarm",
    "minimodel_verifier",
    "minimodel_wire",
];

/// The filter the flags ask for: `quiet` wins over `verbose`.
pub fn directives(verbose: u8, quiet: bool) -> String {
    if quiet {
        return "error".to_owned();
    }
    match verbose {
        0 => "warn".to_owned(),
        1 => {
            let mut text = "warn".to_owned();
            for name in OUR_CRATES {
                text.push_str(&format!(",{name}=info"));
            }
            text
        }
        2 => "debug".to_owned(),
        _ => "trace".to_owned(),
    }
}

/// Writes each log line to stderr around the progress bar.
struct AroundBar;

impl Write for AroundBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        around_bar(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the subscriber for the process.
pub fn init(verbose: u8, quiet: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| EnvFilter::try_new(text).ok());
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(directives(verbose, quiet)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| AroundBar)
        .with_ansi(false);
    // Times and module paths help to read a debug log, not a warning.
    let installed = if verbose >= 2 {
        builder.with_target(true).try_init()
    } else {
        builder.without_time().with_target(false).try_init()
    };
    // Only a second call fails, and the first subscriber is as good.
    let _ = installed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_level() {
        assert_eq!(directives(0, true), "error");
        assert_eq!(directives(3, true), "error");
        assert_eq!(directives(0, false), "warn");
        let info = directives(1, false);
        assert!(info.starts_with("warn,"), "{info}");
        assert!(info.contains("minimodel_swarm=info"), "{info}");
        assert!(!info.contains("quinn"), "quinn only from -vv: {info}");
        assert_eq!(directives(2, false), "debug");
        assert_eq!(directives(7, false), "trace");
        for verbose in 0..4 {
            EnvFilter::try_new(directives(verbose, false)).unwrap();
        }
    }
}
