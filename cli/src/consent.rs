//! Consent: serving, fetching and serving while fetching each need an
//! explicit yes, `--yes` or an answer at a prompt on a terminal. Without a
//! terminal and without `--yes`, the command refuses and says how to
//! consent (exit 5). Transfer consent is not execution consent: nothing
//! here opens or runs a model. What is asked comes from the application
//! layer ([`minimodel_swarm::app::consent`]), as for every front end; this
//! module only asks.

use std::io::{BufRead, IsTerminal, Write};

use minimodel_swarm::app::consent::Disclosure;

use crate::exit::{Exit, Failure};

/// Shows every disclosure of `asks` and asks once for them all, unless
/// `yes` was given. Refused, the failure names each one's words.
pub fn ask_all(asks: &[Disclosure], yes: bool, json: bool) -> Result<(), Failure> {
    if yes || asks.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = asks.iter().map(|ask| ask.consent.name()).collect();
    let words: Vec<&str> = asks.iter().map(|ask| ask.words.as_str()).collect();
    let refusal = || {
        Failure::new(
            Exit::NoConsent,
            anyhow::anyhow!("consent needed ({}): {}", names.join(", "), words.join(" ")),
        )
        .with_hint("pass --yes to consent (or answer the prompt on a terminal)")
    };
    if json || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(refusal());
    }
    for words in &words {
        crate::output::put_err!("- {words}\n");
    }
    crate::output::put_err!("Consent to all of the above? [y/N] ");
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
