//! Consent: serving, fetching and serving while fetching each need an
//! explicit yes, `--yes` or an answer at a prompt on a terminal. Without a
//! terminal and without `--yes`, the command refuses and says how to
//! consent (exit 5). Transfer consent is not execution consent: nothing
//! here opens or runs a model.

use std::io::{BufRead, IsTerminal, Write};

use crate::exit::{Exit, Failure};

/// Asks for consent to `what` (a sentence like "serve tiny-a to other
/// peers"), unless `yes` was given.
pub fn ask(what: &str, yes: bool, json: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    let refusal = || {
        Failure::new(Exit::NoConsent, anyhow::anyhow!("consent needed to {what}"))
            .with_hint("pass --yes to consent (or answer the prompt on a terminal)")
    };
    if json || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(refusal());
    }
    crate::output::put_err!("{what}? The tool never opens or runs the model. [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return Err(refusal());
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(refusal()),
    }
}
