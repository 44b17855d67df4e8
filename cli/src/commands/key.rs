//! `minimodel key ...`: publisher keys and the keyring
//! (`docs/signing.md`).
//!
//! - `key new FILE`: a new key pair, FILE (secret, mode 0600) and
//!   FILE.pub;
//! - `key show KEY`: the key id and public key of a key file or key;
//! - `key rotate --old OLD --new NEW -o FILE`: a rotation statement, the
//!   old key handing over to the new one;
//! - `key accept-rotation FILE`: moves the pins of the old key to the new;
//! - `key pin PUBLISHER-ID KEY`, `key forget PUBLISHER-ID`, `key list`:
//!   the keyring by hand.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use minimodel_verifier::PublisherId;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::keyring::{Pin, PinnedBy};
use minimodel_verifier::signing::rotation::KeyRotation;

use super::write_document;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::keystore::{
    KeyArg, KeyringFile, PublicKeyArg, generate_key, key_pair_paths, read_key_arg, read_secret_key,
    write_key_pair,
};
use crate::output::{Output, counted};
use crate::trust::key_file_failure;

/// Arguments of `minimodel key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// What `minimodel key` does.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a publisher key pair: FILE (the secret key, mode 0600) and
    /// FILE.pub (the public key to give out). Never replaces a file.
    New(NewArgs),
    /// Print the key id and public key of a key file (secret or public)
    /// or of a key (mmpk1...).
    Show(ShowArgs),
    /// Write a rotation statement: the old key signs that the new key
    /// takes its place (give it to those who pinned the old key).
    Rotate(RotateArgs),
    /// Check a rotation statement and move every pin of its old key to
    /// its new key.
    AcceptRotation(AcceptRotationArgs),
    /// Pin a key for a publisher id in the keyring (replacing its pin).
    Pin(PinArgs),
    /// Remove a publisher's pin from the keyring.
    Forget(ForgetArgs),
    /// List the keyring's pins.
    List(ListArgs),
}

/// `--keyring FILE`, for the subcommands that use the keyring.
#[derive(Debug, Args)]
pub struct KeyringArg {
    /// The keyring of pinned publisher keys [default:
    /// $XDG_DATA_HOME/minimodel/keyring, else
    /// ~/.local/share/minimodel/keyring].
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
}

/// Arguments of `minimodel key new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Where the secret key goes; the public key goes to FILE.pub.
    pub file: PathBuf,
}

/// Arguments of `minimodel key show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A key file (secret or public), or a public key (mmpk1...).
    pub key: String,
}

/// Arguments of `minimodel key rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The old key's secret key file (it signs the statement).
    #[arg(long, value_name = "FILE")]
    pub old: PathBuf,
    /// The new key: its public key file, or mmpk1...
    #[arg(long, value_name = "KEY")]
    pub new: PublicKeyArg,
    /// Where to write the statement.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

/// Arguments of `minimodel key accept-rotation`.
#[derive(Debug, Args)]
pub struct AcceptRotationArgs {
    /// The rotation statement.
    pub file: PathBuf,
    #[command(flatten)]
    pub keyring: KeyringArg,
}

/// Arguments of `minimodel key pin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// The publisher id.
    pub publisher_id: PublisherId,
    /// Its key: a public key file, or mmpk1...
    pub key: PublicKeyArg,
    #[command(flatten)]
    pub keyring: KeyringArg,
}

/// Arguments of `minimodel key forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The publisher id.
    pub publisher_id: PublisherId,
    #[command(flatten)]
    pub keyring: KeyringArg,
}

/// Arguments of `minimodel key list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub keyring: KeyringArg,
}

pub fn run(args: KeyArgs, out: Output) -> Result<(), Failure> {
    match args.command {
        KeyCommand::New(args) => new(args, out),
        KeyCommand::Show(args) => show(args, out),
        KeyCommand::Rotate(args) => rotate(args, out),
        KeyCommand::AcceptRotation(args) => accept_rotation(args, out),
        KeyCommand::Pin(args) => pin(args, out),
        KeyCommand::Forget(args) => forget(args, out),
        KeyCommand::List(args) => list(args, out),
    }
}

fn new(args: NewArgs, out: Output) -> Result<(), Failure> {
    let key = generate_key().map_err(key_file_failure)?;
    let public_path = write_key_pair(&args.file, &key).map_err(key_file_failure)?;
    let public = key.public_key();
    let (secret_path, _) = key_pair_paths(&args.file);
    out.say(format!(
        "wrote {} (secret key, keep it private) and {} (public key)",
        secret_path.display(),
        public_path.display()
    ));
    out.say(format!("key id {}", public.key_id()));
    out.say(format!("public key {public}"));
    out.event(&Event::KeyCreated {
        secret_key_file: secret_path,
        public_key_file: public_path,
        key_id: public.key_id().to_string(),
        public_key: public.to_string(),
    });
    Ok(())
}

fn show(args: ShowArgs, out: Output) -> Result<(), Failure> {
    let key = read_key_arg(&args.key)
        .map_err(anyhow::Error::msg)
        .or_exit(Exit::InvalidInput)?;
    let (public, secret) = match key {
        KeyArg::Public(key) => (key, false),
        // Read with its protection checked, like any secret key.
        KeyArg::SecretFile(path) => (
            read_secret_key(&path)
                .map_err(key_file_failure)?
                .public_key(),
            true,
        ),
    };
    out.say(format!("key id {}", public.key_id()));
    out.say(format!("public key {public}"));
    out.event(&Event::Key {
        key_id: public.key_id().to_string(),
        public_key: public.to_string(),
        secret,
    });
    Ok(())
}

fn rotate(args: RotateArgs, out: Output) -> Result<(), Failure> {
    let old = read_secret_key(&args.old).map_err(key_file_failure)?;
    let new = args.new.read()?;
    if old.public_key() == new {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!("--new is the old key itself: nothing rotates"),
        ));
    }
    let rotation = KeyRotation::sign(&old, &new);
    write_document(&args.output, rotation.to_text().as_bytes())?;
    out.say(format!(
        "wrote {}: key {} hands over to key {}; give it to everyone who pinned {}",
        args.output.display(),
        rotation.old_key.key_id(),
        rotation.new_key.key_id(),
        rotation.old_key.key_id()
    ));
    out.event(&Event::KeyRotation {
        path: args.output,
        old_key_id: rotation.old_key.key_id().to_string(),
        new_key_id: rotation.new_key.key_id().to_string(),
        new_key: rotation.new_key.to_string(),
    });
    Ok(())
}

fn accept_rotation(args: AcceptRotationArgs, out: Output) -> Result<(), Failure> {
    let bytes = super::read_input(&args.file, minimodel_swarm::input::Input::ROTATION)?;
    let rotation = KeyRotation::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a rotation statement: {e}", args.file.display()))
        .or_exit(Exit::InvalidInput)?;
    let checked = rotation.check().map_err(|_| {
        Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!(
                "{}: the signature of key {} does not verify; nothing was changed",
                args.file.display(),
                rotation.old_key.key_id()
            ),
        )
        .with_hint("the statement was changed, or was not made with the old key; get it again from the publisher")
    })?;
    let mut file = KeyringFile::load(args.keyring.keyring.as_deref()).map_err(key_file_failure)?;
    let moved = file.keyring.apply_rotation(&checked, &now_rfc3339());
    if !moved.is_empty() {
        file.save().map_err(key_file_failure)?;
    }
    let names: Vec<String> = moved.iter().map(ToString::to_string).collect();
    if names.is_empty() {
        out.say(format!(
            "no publisher in {} is pinned to key {}; nothing changed",
            file.describe(),
            checked.old_key().key_id()
        ));
    } else {
        out.say(format!(
            "key {} replaces key {} for {} ({}) in {}",
            checked.new_key().key_id(),
            checked.old_key().key_id(),
            counted(names.len() as u64, "publisher"),
            names.join(", "),
            file.describe()
        ));
    }
    out.event(&Event::RotationAccepted {
        old_key_id: checked.old_key().key_id().to_string(),
        new_key_id: checked.new_key().key_id().to_string(),
        publishers: names,
    });
    Ok(())
}

fn pin(args: PinArgs, out: Output) -> Result<(), Failure> {
    let key = args.key.read()?;
    let mut file = KeyringFile::load(args.keyring.keyring.as_deref()).map_err(key_file_failure)?;
    let pin = Pin {
        publisher_id: args.publisher_id,
        key,
        pinned_by: PinnedBy::KeyPin,
        pinned_at: now_rfc3339(),
    };
    let old = file
        .keyring
        .set(pin.clone())
        .map_err(|full| Failure::new(Exit::Transfer, full))?;
    let path = file.save().map_err(key_file_failure)?.to_owned();
    let replaced = match &old {
        Some(old) if old.key != pin.key => format!(" (replacing key {})", old.key.key_id()),
        _ => String::new(),
    };
    out.say(format!(
        "pinned key {} for publisher {} in {}{replaced}",
        pin.key.key_id(),
        pin.publisher_id,
        path.display()
    ));
    out.event(&Event::KeyPinned {
        publisher_id: pin.publisher_id.to_string(),
        key_id: pin.key.key_id().to_string(),
        publisher_key: pin.key.to_string(),
        pinned_by: pin.pinned_by.to_string(),
        keyring: path,
    });
    Ok(())
}

fn forget(args: ForgetArgs, out: Output) -> Result<(), Failure> {
    let mut file = KeyringFile::load(args.keyring.keyring.as_deref()).map_err(key_file_failure)?;
    let Some(old) = file.keyring.remove(&args.publisher_id) else {
        out.say(format!(
            "publisher {} has no pin in {}; nothing changed",
            args.publisher_id,
            file.describe()
        ));
        out.event(&Event::KeyForgotten {
            publisher_id: args.publisher_id.to_string(),
            key_id: None,
        });
        return Ok(());
    };
    file.save().map_err(key_file_failure)?;
    out.say(format!(
        "forgot key {} of publisher {}: its next manifest is seen as for the first time",
        old.key.key_id(),
        old.publisher_id
    ));
    out.event(&Event::KeyForgotten {
        publisher_id: old.publisher_id.to_string(),
        key_id: Some(old.key.key_id().to_string()),
    });
    Ok(())
}

fn list(args: ListArgs, out: Output) -> Result<(), Failure> {
    let file = KeyringFile::load(args.keyring.keyring.as_deref()).map_err(key_file_failure)?;
    let mut count = 0u64;
    for pin in file.keyring.pins() {
        count += 1;
        out.say(format!(
            "{} {} {} ({} at {})",
            pin.publisher_id,
            pin.key.key_id(),
            pin.key,
            pin.pinned_by.describe(),
            pin.pinned_at
        ));
        out.event(&Event::KeyPin {
            publisher_id: pin.publisher_id.to_string(),
            key_id: pin.key.key_id().to_string(),
            publisher_key: pin.key.to_string(),
            pinned_by: pin.pinned_by.to_string(),
            pinned_at: pin.pinned_at.clone(),
        });
    }
    out.say(format!("{} in {}", counted(count, "pin"), file.describe()));
    Ok(())
}
