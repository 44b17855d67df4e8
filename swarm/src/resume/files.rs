//! The files of one download and the crash-safe ways they change, all
//! through a [`SafeDir`] handle on the directory (no link is followed, no
//! file but a regular one of ours is used).
//!
//! A checkpoint (`docs/resume.md`, "Checkpoint order"): the caller has
//! synced the `.part`; then [`write_state`] writes the new state to a new
//! temporary file and fsyncs it, renames the current state to `.prev` (only
//! when the current one is known good), renames the temporary file to the
//! state name, and fsyncs the directory. A crash at any point leaves either
//! the old state, or the old one as `.prev` and no current one, or the new
//! one: never a half-written file under the state name.

use std::path::{Path, PathBuf};

use minimodel_verifier::ModelId;
use minimodel_verifier::receipt::{ImportReceipt, RECEIPT_FORMAT};

use super::dir::SafeDir;
use super::error::ResumeError;
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
    /// `<model-id>.slm.journal`: chunks verified since the last checkpoint
    /// began.
    pub journal: PathBuf,
    /// `<model-id>.slm.journal.prev`: the journal a running checkpoint
    /// persists.
    pub journal_prev: PathBuf,
    /// `<model-id>.slm`: the finished artifact.
    pub artifact: PathBuf,
    /// `<model-id>.receipt.json`: its receipt.
    pub receipt: PathBuf,
    /// `<model-id>.chunk-list`: the chunk hashes of the finished artifact,
    /// so that a damaged copy is repaired chunk by chunk.
    pub chunk_list: PathBuf,
    /// `<model-id>.slm.peers`: the peers that served earlier runs
    /// (`minimodel-peers-v0`).
    pub peers: PathBuf,
    /// `<model-id>.slm.mirrors`: what earlier runs saw of their mirrors
    /// (`minimodel-mirrors-v0`).
    pub mirrors: PathBuf,
    /// `.<model-id>.slm.lock`: empty; locked (`flock`) by the process that
    /// has the download open, so that a second one is refused. Never
    /// removed: a process may have opened it to lock it, and would then
    /// hold a lock on a file nobody else sees.
    pub lock: PathBuf,
    pub(crate) names: FileNames,
}

/// The names of a download's files in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileNames {
    pub(crate) part: String,
    pub(crate) state: String,
    pub(crate) previous: String,
    pub(crate) journal: String,
    pub(crate) journal_prev: String,
    pub(crate) artifact: String,
    pub(crate) receipt: String,
    pub(crate) chunk_list: String,
    pub(crate) peers: String,
    pub(crate) mirrors: String,
    pub(crate) lock: String,
}

impl DownloadPaths {
    /// The files of `model_id`'s download in `dir`.
    pub fn new(dir: &Path, model_id: &ModelId) -> Self {
        let names = FileNames {
            part: format!("{model_id}.slm.part"),
            state: format!("{model_id}.slm.state"),
            previous: format!("{model_id}.slm.state.prev"),
            journal: format!("{model_id}.slm.journal"),
            journal_prev: format!("{model_id}.slm.journal.prev"),
            artifact: format!("{model_id}.slm"),
            receipt: format!("{model_id}.receipt.json"),
            chunk_list: format!("{model_id}.chunk-list"),
            peers: format!("{model_id}.slm.peers"),
            mirrors: format!("{model_id}.slm.mirrors"),
            lock: format!(".{model_id}.slm.lock"),
        };
        Self {
            dir: dir.to_path_buf(),
            part: dir.join(&names.part),
            state: dir.join(&names.state),
            previous: dir.join(&names.previous),
            journal: dir.join(&names.journal),
            journal_prev: dir.join(&names.journal_prev),
            artifact: dir.join(&names.artifact),
            receipt: dir.join(&names.receipt),
            chunk_list: dir.join(&names.chunk_list),
            peers: dir.join(&names.peers),
            mirrors: dir.join(&names.mirrors),
            lock: dir.join(&names.lock),
            names,
        }
    }
}

/// What [`remove_download`] removed, and why it stopped short if it did.
#[derive(Debug, Default)]
pub struct RemovedDownload {
    /// The files removed.
    pub removed: Vec<PathBuf>,
    /// Why the others stay: [`ResumeError::InUse`] (nothing removed), or
    /// the disk refusing a removal or the directory's sync.
    pub error: Option<ResumeError>,
}

/// Removes the files of `model_id`'s download in `dir` (all but its lock
/// file, which is never removed) while holding its lock: refused with
/// [`ResumeError::InUse`] when a process has the download open, and then
/// nothing is removed. A missing directory has nothing to remove. Only
/// regular files of ours are removed; anything else under a download's
/// name stays. Blocking.
pub fn remove_download(dir: &Path, model_id: &ModelId) -> RemovedDownload {
    let mut done = RemovedDownload::default();
    if let Err(error) = remove_download_files(dir, model_id, &mut done.removed) {
        done.error = Some(error);
    }
    done
}

fn remove_download_files(
    dir: &Path,
    model_id: &ModelId,
    removed: &mut Vec<PathBuf>,
) -> Result<(), ResumeError> {
    if !dir.exists() {
        return Ok(());
    }
    let safe = SafeDir::open(dir, false)?;
    let paths = DownloadPaths::new(dir, model_id);
    let names = &paths.names;
    let all = [
        &names.part,
        &names.state,
        &names.previous,
        &names.journal,
        &names.journal_prev,
        &names.artifact,
        &names.receipt,
        &names.chunk_list,
        &names.peers,
        &names.mirrors,
    ];
    // Nothing there: no lock file is made either.
    if !all.iter().any(|name| safe.exists(name)) {
        return Ok(());
    }
    let _lock = safe
        .lock(&paths.names.lock)?
        .ok_or_else(|| ResumeError::InUse {
            path: paths.lock.clone(),
            model_id: model_id.to_string(),
        })?;
    for name in all {
        if matches!(safe.inspect(name), Ok(Some(_))) {
            safe.remove_if_present(name)?;
            removed.push(safe.join(name));
        }
    }
    safe.sync()
}

/// What is in a state file's place.
#[derive(Debug)]
pub(crate) enum StateFile {
    /// No file.
    Missing,
    /// A checked state.
    Usable(Box<PartialState>),
    /// A file that cannot be used.
    Unusable(super::error::StateError),
}

/// Reads the state file `name`. Only I/O failures other than a missing
/// file, and an entry that is not a regular file of ours, are errors; what
/// the bytes say is in the [`StateFile`].
pub(crate) fn load_state(dir: &SafeDir, name: &str) -> Result<StateFile, ResumeError> {
    let Some(bytes) = dir.read(name, MAX_STATE_BYTES as u64 + 1)? else {
        return Ok(StateFile::Missing);
    };
    Ok(match parse_state(&bytes) {
        Ok(state) => StateFile::Usable(Box::new(state)),
        Err(error) => StateFile::Unusable(error),
    })
}

/// Writes `bytes` as the new current state, keeping the current one as
/// `.prev` when `current_is_good`. `current_is_good` follows what is on
/// disk afterwards, also when a step fails.
pub(crate) fn write_state(
    dir: &SafeDir,
    names: &FileNames,
    bytes: &[u8],
    current_is_good: &mut bool,
) -> Result<(), ResumeError> {
    let (mut temp_file, temp) = dir.create_temp(&names.state)?;
    let written = std::io::Write::write_all(&mut temp_file, bytes)
        .and_then(|()| temp_file.sync_all())
        .map_err(super::error::io_error(
            "write the new state",
            dir.join(&temp),
        ));
    let discard = |error: ResumeError| {
        let _ = dir.remove_if_present(&temp);
        error
    };
    written.map_err(discard)?;
    if *current_is_good {
        dir.rename(&names.state, &names.previous).map_err(discard)?;
        *current_is_good = false;
    }
    dir.rename(&temp, &names.state).map_err(discard)?;
    // Held open (and locked) until renamed, so that it is never taken for
    // a stale temporary file.
    drop(temp_file);
    *current_is_good = true;
    dir.sync()
}

/// Reads a receipt: `Err` says what is wrong with it, in words.
pub(crate) fn load_receipt(dir: &SafeDir, name: &str) -> Result<ImportReceipt, String> {
    let bytes = match dir.read(name, MAX_RECEIPT_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err("is missing".to_owned()),
        Err(ResumeError::UnsafeEntry { kind, .. }) => return Err(kind.to_string()),
        Err(error) => return Err(format!("cannot be read ({})", super::error::chain(&error))),
    };
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::resume::error::StateError;

    fn setup() -> (tempfile::TempDir, SafeDir, DownloadPaths) {
        let dir = tempfile::tempdir().unwrap();
        let safe = SafeDir::open(dir.path(), false).unwrap();
        let paths = DownloadPaths::new(dir.path(), &ModelId::new("m").unwrap());
        (dir, safe, paths)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn remove_download_takes_the_lock_and_leaves_what_is_not_ours() {
        let (dir, safe, paths) = setup();
        let model = ModelId::new("m").unwrap();
        // Nothing there: nothing removed, no lock file made.
        let none = remove_download(dir.path(), &model);
        assert!(none.removed.is_empty() && none.error.is_none(), "{none:?}");
        assert!(names(dir.path()).is_empty());
        for path in [&paths.part, &paths.state, &paths.receipt, &paths.peers] {
            fs::write(path, b"x").unwrap();
        }
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"keep").unwrap();
        crate::platform::plant_link(&elsewhere, &paths.artifact).unwrap();
        fs::write(dir.path().join("other.slm"), b"other").unwrap();
        // Open elsewhere: refused, nothing removed.
        let held = safe.lock(&paths.names.lock).unwrap().expect("lock taken");
        let refused = remove_download(dir.path(), &model);
        assert!(
            matches!(refused.error, Some(ResumeError::InUse { .. })) && refused.removed.is_empty(),
            "{refused:?}"
        );
        assert!(paths.part.exists() && paths.receipt.exists());
        drop(held);
        let done = remove_download(dir.path(), &model);
        assert!(done.error.is_none(), "{done:?}");
        let mut removed = done.removed;
        removed.sort();
        let mut expected = vec![
            paths.part.clone(),
            paths.state.clone(),
            paths.receipt.clone(),
            paths.peers.clone(),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        // The link, the file it names, another artifact and the lock stay.
        assert_eq!(
            names(dir.path()),
            [".m.slm.lock", "elsewhere", "m.slm", "other.slm"]
        );
        assert_eq!(fs::read(&elsewhere).unwrap(), b"keep");
    }

    #[test]
    fn file_names_follow_the_model_id() {
        let paths = DownloadPaths::new(Path::new("/d"), &ModelId::new("tiny-1").unwrap());
        assert_eq!(paths.part, Path::new("/d/tiny-1.slm.part"));
        assert_eq!(paths.state, Path::new("/d/tiny-1.slm.state"));
        assert_eq!(paths.previous, Path::new("/d/tiny-1.slm.state.prev"));
        assert_eq!(paths.journal, Path::new("/d/tiny-1.slm.journal"));
        assert_eq!(paths.journal_prev, Path::new("/d/tiny-1.slm.journal.prev"));
        assert_eq!(paths.artifact, Path::new("/d/tiny-1.slm"));
        assert_eq!(paths.receipt, Path::new("/d/tiny-1.receipt.json"));
        assert_eq!(paths.chunk_list, Path::new("/d/tiny-1.chunk-list"));
    }

    #[test]
    fn a_good_current_state_becomes_prev() {
        let (dir, safe, paths) = setup();
        let mut good = false;
        write_state(&safe, &paths.names, b"one", &mut good).unwrap();
        assert!(good);
        assert!(!paths.previous.exists());
        write_state(&safe, &paths.names, b"two", &mut good).unwrap();
        assert_eq!(fs::read(&paths.state).unwrap(), b"two");
        assert_eq!(fs::read(&paths.previous).unwrap(), b"one");
        assert_eq!(names(dir.path()), ["m.slm.state", "m.slm.state.prev"]);
    }

    #[test]
    fn a_bad_current_state_does_not_replace_prev() {
        let (_dir, safe, paths) = setup();
        fs::write(&paths.previous, b"old good").unwrap();
        fs::write(&paths.state, b"garbage").unwrap();
        let mut good = false;
        write_state(&safe, &paths.names, b"new", &mut good).unwrap();
        assert_eq!(fs::read(&paths.previous).unwrap(), b"old good");
        assert_eq!(fs::read(&paths.state).unwrap(), b"new");
    }

    #[test]
    fn a_link_at_the_state_name_is_refused_and_left_alone() {
        let (dir, safe, paths) = setup();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        crate::platform::plant_link(&victim, &paths.previous).unwrap();
        let mut good = false;
        write_state(&safe, &paths.names, b"one", &mut good).unwrap();
        // The current state is good now: keeping it as .prev would have to
        // replace the link.
        let error = write_state(&safe, &paths.names, b"two", &mut good).unwrap_err();
        assert!(matches!(error, ResumeError::UnsafeEntry { .. }), "{error}");
        assert!(good, "the current state is still in place");
        assert_eq!(fs::read(&paths.state).unwrap(), b"one");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(
            names(dir.path()),
            ["m.slm.state", "m.slm.state.prev", "victim"]
        );
    }

    #[test]
    fn missing_and_unusable_states_are_told_apart() {
        let (_dir, safe, paths) = setup();
        assert!(matches!(
            load_state(&safe, &paths.names.state).unwrap(),
            StateFile::Missing
        ));
        fs::write(&paths.state, b"{").unwrap();
        assert!(matches!(
            load_state(&safe, &paths.names.state).unwrap(),
            StateFile::Unusable(StateError::Syntax(_))
        ));
    }

    #[test]
    fn receipts_are_checked_for_their_format() {
        let (dir, safe, _paths) = setup();
        assert_eq!(load_receipt(&safe, "r.json").unwrap_err(), "is missing");
        fs::write(dir.path().join("r.json"), b"[]").unwrap();
        assert!(
            load_receipt(&safe, "r.json")
                .unwrap_err()
                .starts_with("is not a receipt")
        );
        crate::platform::plant_link(&dir.path().join("r.json"), &dir.path().join("l.json"))
            .unwrap();
        assert_eq!(
            load_receipt(&safe, "l.json").unwrap_err(),
            "is a symbolic link"
        );
    }
}
