//! The transfer log: what moved, with whom, how many bytes, when, and the
//! receipt. One JSON object per line (`minimodel-transfer-v0`,
//! `docs/companion.md`, "The transfer log") in `LIBRARY/log/transfers.jsonl`,
//! appended and synced entry by entry, never rewritten. When the file
//! would pass its size limit it becomes `transfers.jsonl.1` (the older
//! ones move up to `.2` and `.3`; the oldest goes), and a new file starts.
//!
//! A crash can cut the last line short; the next append starts on a new
//! line, and readers skip a line that does not parse.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::library::ItemId;

/// The `format` of every entry.
pub const ENTRY_FORMAT: &str = "minimodel-transfer-v0";
/// The file's name in `LIBRARY/log/`.
pub const LOG_NAME: &str = "transfers.jsonl";
/// Default size at which the log rotates.
pub const DEFAULT_ROTATE_BYTES: u64 = 8 << 20;
/// Rotated files kept (`.1` to `.3`).
pub const KEPT_ROTATIONS: u32 = 3;
/// The most entries one read returns.
pub const MAX_READ_ENTRIES: usize = 1000;
/// The longest line read back (longer ones are skipped).
const MAX_LINE: usize = 64 * 1024;

/// Which way the bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Direction {
    /// From the peer to us.
    Download,
    /// From us to the peer.
    Upload,
}

/// How the transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Ended {
    /// The download was delivered with its receipt.
    Delivered,
    /// The peer left (an upload).
    Disconnected,
    /// The item was paused, removed or the companion stopped.
    Stopped,
    /// The download failed (the verified part is kept).
    Failed,
}

/// The receipt of a delivered download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReceiptRef {
    /// Where it is.
    pub path: PathBuf,
    /// SHA-256 of its bytes as written.
    pub sha256: String,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogEntry {
    /// [`ENTRY_FORMAT`].
    pub format: String,
    /// When the entry was written (RFC 3339 UTC).
    pub at: String,
    /// The library item.
    pub item: String,
    /// The artifact's model id.
    pub model_id: String,
    /// Which way.
    pub direction: Direction,
    /// The other peer's id (empty for a mirror).
    pub peer_id: String,
    /// The mirror the bytes came from, as given without its query
    /// (`https://host/path`); absent for a peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Its address, when known.
    pub address: Option<String>,
    /// Verified chunk bytes moved in this entry's span (since the item
    /// started, or since the peer connected for an upload).
    pub bytes: u64,
    /// Chunks, when counted.
    pub chunks: Option<u64>,
    /// How it ended.
    pub ended: Ended,
    /// The receipt, for a delivered download.
    pub receipt: Option<ReceiptRef>,
}

impl LogEntry {
    /// An entry stamped now.
    pub fn new(
        item: &ItemId,
        model_id: &str,
        direction: Direction,
        peer_id: String,
        bytes: u64,
        ended: Ended,
    ) -> Self {
        Self {
            format: ENTRY_FORMAT.to_owned(),
            at: minimodel_verifier::receipt::now_rfc3339(),
            item: item.to_string(),
            model_id: model_id.to_owned(),
            direction,
            peer_id,
            mirror: None,
            address: None,
            bytes,
            chunks: None,
            ended,
            receipt: None,
        }
    }

    /// A download line for the mirror `url` (without its query).
    pub fn from_mirror(
        item: &ItemId,
        model_id: &str,
        url: &str,
        bytes: u64,
        chunks: u64,
        ended: Ended,
    ) -> Self {
        Self {
            mirror: Some(url.to_owned()),
            chunks: Some(chunks),
            ..Self::new(
                item,
                model_id,
                Direction::Download,
                String::new(),
                bytes,
                ended,
            )
        }
    }

    /// Parses one line; `None` for a line that is not an entry.
    pub fn parse(line: &[u8]) -> Option<LogEntry> {
        let entry: LogEntry = serde_json::from_slice(line).ok()?;
        (entry.format == ENTRY_FORMAT).then_some(entry)
    }
}

/// The log writer.
#[derive(Debug)]
pub struct TransferLog {
    dir: PathBuf,
    rotate_bytes: u64,
    file: Option<File>,
    len: u64,
}

impl TransferLog {
    /// The log in `dir` (created by the library), rotating at
    /// `rotate_bytes`.
    pub fn open(dir: &Path, rotate_bytes: u64) -> io::Result<Self> {
        let mut log = Self {
            dir: dir.to_owned(),
            rotate_bytes: rotate_bytes.max(1024),
            file: None,
            len: 0,
        };
        log.reopen()?;
        Ok(log)
    }

    fn path(&self, generation: u32) -> PathBuf {
        match generation {
            0 => self.dir.join(LOG_NAME),
            n => self.dir.join(format!("{LOG_NAME}.{n}")),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        let mut file = minimodel_swarm::platform::open_private(
            &self.path(0),
            minimodel_swarm::platform::PrivateOpen::ReadAppendCreate,
        )?;
        let len = file.metadata()?.len();
        // A line cut short by a crash: the next entry starts a line.
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        self.len = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.path(KEPT_ROTATIONS));
        for generation in (0..KEPT_ROTATIONS).rev() {
            match std::fs::rename(self.path(generation), self.path(generation + 1)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        self.reopen()
    }

    /// Appends `entry` as one line and syncs it; rotates first when the
    /// file would pass its limit.
    pub fn append(&mut self, entry: &LogEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.len > 0 && self.len + line.len() as u64 > self.rotate_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("no log file"))?;
        file.write_all(&line)?;
        file.sync_data()?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// The last `limit` entries (at most [`MAX_READ_ENTRIES`]), oldest
    /// first, from the current file and the rotated ones.
    pub fn read_last(&self, limit: usize) -> io::Result<Vec<LogEntry>> {
        read_last(&self.dir, limit)
    }
}

/// The last `limit` entries of the log in `dir`, oldest first.
pub fn read_last(dir: &Path, limit: usize) -> io::Result<Vec<LogEntry>> {
    let limit = limit.min(MAX_READ_ENTRIES);
    let mut newest_first: Vec<LogEntry> = Vec::new();
    for generation in 0..=KEPT_ROTATIONS {
        if newest_first.len() >= limit {
            break;
        }
        let path = match generation {
            0 => dir.join(LOG_NAME),
            n => dir.join(format!("{LOG_NAME}.{n}")),
        };
        let bytes = match read_capped(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for line in bytes.split(|&b| b == b'\n').rev() {
            if newest_first.len() >= limit {
                break;
            }
            if line.is_empty() || line.len() > MAX_LINE {
                continue;
            }
            if let Some(entry) = LogEntry::parse(line) {
                newest_first.push(entry);
            }
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// A log file's bytes, at most 64 MiB of its end.
fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = minimodel_swarm::platform::open_no_follow(path)
        .map_err(minimodel_swarm::platform::OpenRefusal::into_io)?;
    let len = file.metadata()?.len();
    let cap = 64 << 20;
    if len > cap {
        file.seek(SeekFrom::Start(len - cap))?;
    }
    let mut bytes = Vec::new();
    file.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: u64) -> LogEntry {
        LogEntry::new(
            &"0123456789abcdef".parse().unwrap(),
            "tiny",
            Direction::Upload,
            "a".repeat(52),
            bytes,
            Ended::Disconnected,
        )
    }

    #[test]
    fn entries_are_appended_read_back_and_rotated_by_size() {
        let temp = tempfile::tempdir().unwrap();
        let mut log = TransferLog::open(temp.path(), 2048).unwrap();
        for bytes in 0..40 {
            log.append(&entry(bytes)).unwrap();
        }
        let all = log.read_last(1000).unwrap();
        let kept: Vec<u64> = all.iter().map(|e| e.bytes).collect();
        // Oldest first, consecutive, ending with the last written; the
        // oldest rotated away once four files are full.
        assert_eq!(kept.last(), Some(&39));
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
        assert!(kept.len() < 40, "some entries rotated away: {}", kept.len());
        for generation in 0..=KEPT_ROTATIONS {
            let path = log.path(generation);
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len <= 2048, "{} is {len} bytes", path.display());
        }
        assert!(!log.path(KEPT_ROTATIONS + 1).exists());
        let last_three: Vec<u64> = log.read_last(3).unwrap().iter().map(|e| e.bytes).collect();
        assert_eq!(last_three, [37, 38, 39]);
    }

    #[test]
    fn a_line_cut_short_is_skipped_and_the_next_entry_starts_a_line() {
        let temp = tempfile::tempdir().unwrap();
        {
            let mut log = TransferLog::open(temp.path(), 1 << 20).unwrap();
            log.append(&entry(1)).unwrap();
        }
        let path = temp.path().join(LOG_NAME);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"format\":\"minimodel-transfer-v0\",\"at\":")
            .unwrap();
        let mut log = TransferLog::open(temp.path(), 1 << 20).unwrap();
        log.append(&entry(2)).unwrap();
        let bytes: Vec<u64> = log.read_last(10).unwrap().iter().map(|e| e.bytes).collect();
        assert_eq!(bytes, [1, 2]);
    }

    #[test]
    fn lines_that_are_not_entries_are_not_read() {
        for bad in [
            &b""[..],
            b"{}",
            b"not json",
            b"{\"format\":\"other\"}",
            b"[1,2]",
        ] {
            assert!(LogEntry::parse(bad).is_none(), "{bad:?}");
        }
        let mut value = serde_json::to_value(entry(5)).unwrap();
        assert!(LogEntry::parse(value.to_string().as_bytes()).is_some());
        value["format"] = "minimodel-transfer-v1".into();
        assert!(LogEntry::parse(value.to_string().as_bytes()).is_none());
        let mut unknown = serde_json::to_value(entry(5)).unwrap();
        unknown["extra"] = 1.into();
        assert!(LogEntry::parse(unknown.to_string().as_bytes()).is_none());
    }
    #[test]
    fn a_mirror_line_names_its_url_and_reads_back() {
        let line = LogEntry::from_mirror(
            &"0123456789abcdef".parse().unwrap(),
            "tiny",
            "https://mirror.example.org/tiny.slm",
            4096,
            2,
            Ended::Delivered,
        );
        let text = serde_json::to_string(&line).unwrap();
        let read = LogEntry::parse(text.as_bytes()).expect("a mirror line is an entry");
        assert_eq!(
            read.mirror.as_deref(),
            Some("https://mirror.example.org/tiny.slm")
        );
        assert_eq!(read.peer_id, "");
        assert_eq!((read.bytes, read.chunks), (4096, Some(2)));
        assert!(matches!(read.direction, Direction::Download));
        // A peer's line has no `mirror` key at all.
        let peer = serde_json::to_value(entry(5)).unwrap();
        assert!(peer.get("mirror").is_none(), "{peer}");
    }
}
