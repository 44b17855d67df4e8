//! The files of one download and the crash-safe ways they change.
//!
//! A checkpoint (`docs/resume.md`, "Checkpoint order"): the caller has
//! synced the `.part`; then [`write_state`] writes the new state to a
//! temporary file and fsyncs it, renames the current state to `.prev` (only
//! when the current one is known good), renames the temporary file to the
//! state name, and fsyncs the directory. A crash at any point leaves either
//! the old state, or the old one as `.prev` and no current one, or the new
//! one: never a half-written file under the state name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use minimodel_verifier::ModelId;
use minimodel_verifier::receipt::{ImportReceipt, RECEIPT_FORMAT};

use super::error::{ResumeError, StateError, io_error};
use super::state::{MAX_STATE_BYTES, PartialState, parse_state};

/// Largest receipt read.
const MAX_RECEIPT_BYTES: u64 = 1 << 20;

/// The files of one download in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPaths {
    /// The directory.
    pub dir: PathBuf,
    /// `<model-id>.slm.part`: the artifact's bytes at their final offsets.
    pub part: PathBuf,
    /// `<model-id>.slm.state`: the current state.
    pub state: PathBuf,
    /// `<model-id>.slm.state.prev`: the generation before it.
    pub previous: PathBuf,
    /// `.<model-id>.slm.state.tmp`: a state being written; never read.
    pub temp: PathBuf,
    /// `<model-id>.slm`: the finished artifact.
    pub artifact: PathBuf,
    /// `<model-id>.receipt.json`: its receipt.
    pub receipt: PathBuf,
}

impl DownloadPaths {
    /// The files of `model_id`'s download in `dir`.
    pub fn new(dir: &Path, model_id: &ModelId) -> Self {
        let named = |suffix: &str| dir.join(format!("{model_id}{suffix}"));
        Self {
            dir: dir.to_path_buf(),
            part: named(".slm.part"),
            state: named(".slm.state"),
            previous: named(".slm.state.prev"),
            temp: dir.join(format!(".{model_id}.slm.state.tmp")),
            artifact: named(".slm"),
            receipt: named(".receipt.json"),
        }
    }
}

/// What is in a state file's place.
#[derive(Debug)]
pub(crate) enum StateFile {
    /// No file.
    Missing,
    /// A checked state.
    Usable(Box<PartialState>),
    /// A file that cannot be used.
    Unusable(StateError),
}

/// Reads the state file at `path`. Only I/O failures other than a missing
/// file are errors; what the bytes say is in the [`StateFile`].
pub(crate) fn load_state(path: &Path) -> Result<StateFile, ResumeError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(StateFile::Missing),
        Err(error) => return Err(io_error("open the state file", path)(error)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("read the state file", path))?;
    Ok(match parse_state(&bytes) {
        Ok(state) => StateFile::Usable(Box::new(state)),
        Err(error) => StateFile::Unusable(error),
    })
}

/// Writes `bytes` as the new current state, keeping the current one as
/// `.prev` when `current_is_good`. `current_is_good` follows what is on
/// disk afterwards, also when a step fails.
pub(crate) fn write_state(
    paths: &DownloadPaths,
    bytes: &[u8],
    current_is_good: &mut bool,
) -> Result<(), ResumeError> {
    let written = (|| {
        let mut temp = File::create(&paths.temp)?;
        temp.write_all(bytes)?;
        temp.sync_all()
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&paths.temp);
        return Err(io_error("write the new state", &paths.temp)(error));
    }
    if *current_is_good {
        if let Err(error) = fs::rename(&paths.state, &paths.previous) {
            let _ = fs::remove_file(&paths.temp);
            return Err(io_error("keep the previous state as", &paths.previous)(
                error,
            ));
        }
        *current_is_good = false;
    }
    fs::rename(&paths.temp, &paths.state)
        .map_err(io_error("rename the new state to", &paths.state))?;
    *current_is_good = true;
    sync_dir(&paths.dir)
}

/// Makes renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ResumeError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync the directory", dir))
}

/// Removes `path`; a missing file is fine.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), ResumeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("remove", path)(error)),
    }
}

/// Whether `path` exists (an error to find out counts as yes, so that
/// nothing is overwritten on a guess).
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::symlink_metadata(path), Err(error) if error.kind() == io::ErrorKind::NotFound)
}

/// Reads a receipt: `Err` says what is wrong with it, in words.
pub(crate) fn load_receipt(path: &Path) -> Result<ImportReceipt, String> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => "is missing".to_owned(),
        _ => format!("cannot be read ({error})"),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_RECEIPT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot be read ({error})"))?;
    let receipt: ImportReceipt =
        serde_json::from_slice(&bytes).map_err(|error| format!("is not a receipt ({error})"))?;
    if receipt.format != RECEIPT_FORMAT {
        return Err(format!(
            "has format {:?}, not {RECEIPT_FORMAT}",
            receipt.format
        ));
    }
    Ok(receipt)
}

/// Writes `bytes` to `path` through the temporary file `temp` and a
/// rename, fsynced.
pub(crate) fn write_file_atomically(
    path: &Path,
    temp: &Path,
    bytes: &[u8],
) -> Result<(), ResumeError> {
    let written = (|| {
        let mut file = File::create(temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(temp, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(temp);
        return Err(io_error("write", path)(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> DownloadPaths {
        DownloadPaths::new(dir, &ModelId::new("m").unwrap())
    }

    #[test]
    fn file_names_follow_the_model_id() {
        let paths = DownloadPaths::new(Path::new("/d"), &ModelId::new("tiny-1").unwrap());
        assert_eq!(paths.part, Path::new("/d/tiny-1.slm.part"));
        assert_eq!(paths.state, Path::new("/d/tiny-1.slm.state"));
        assert_eq!(paths.previous, Path::new("/d/tiny-1.slm.state.prev"));
        assert_eq!(paths.temp, Path::new("/d/.tiny-1.slm.state.tmp"));
        assert_eq!(paths.artifact, Path::new("/d/tiny-1.slm"));
        assert_eq!(paths.receipt, Path::new("/d/tiny-1.receipt.json"));
    }

    #[test]
    fn a_good_current_state_becomes_prev() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let mut good = false;
        write_state(&paths, b"one", &mut good).unwrap();
        assert!(good);
        assert!(!exists(&paths.previous));
        write_state(&paths, b"two", &mut good).unwrap();
        assert_eq!(fs::read(&paths.state).unwrap(), b"two");
        assert_eq!(fs::read(&paths.previous).unwrap(), b"one");
        assert!(!exists(&paths.temp));
    }

    #[test]
    fn a_bad_current_state_does_not_replace_prev() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        fs::write(&paths.previous, b"old good").unwrap();
        fs::write(&paths.state, b"garbage").unwrap();
        let mut good = false;
        write_state(&paths, b"new", &mut good).unwrap();
        assert_eq!(fs::read(&paths.previous).unwrap(), b"old good");
        assert_eq!(fs::read(&paths.state).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_the_state_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        let mut good = false;
        write_state(&paths, b"one", &mut good).unwrap();
        // A directory where the temporary file goes: creating it fails.
        fs::create_dir(&paths.temp).unwrap();
        let error = write_state(&paths, b"two", &mut good).unwrap_err();
        assert!(error.is_io(), "{error}");
        assert!(good);
        assert_eq!(fs::read(&paths.state).unwrap(), b"one");
        assert!(!exists(&paths.previous));
    }

    #[test]
    fn missing_and_unusable_states_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        assert!(matches!(
            load_state(&paths.state).unwrap(),
            StateFile::Missing
        ));
        fs::write(&paths.state, b"{").unwrap();
        assert!(matches!(
            load_state(&paths.state).unwrap(),
            StateFile::Unusable(StateError::Syntax(_))
        ));
    }

    #[test]
    fn receipts_are_checked_for_their_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        assert_eq!(load_receipt(&path).unwrap_err(), "is missing");
        fs::write(&path, b"[]").unwrap();
        assert!(
            load_receipt(&path)
                .unwrap_err()
                .starts_with("is not a receipt")
        );
    }
}
