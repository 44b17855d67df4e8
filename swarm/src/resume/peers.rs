//! `DIR/<model-id>.slm.peers`: the peers a download remembers between runs
//! (`docs/formats.md`, "Remembered peers"; what is kept is decided by
//! [`minimodel_node::remembered`]). Advisory: a missing file, or one whose
//! content is damaged or of another format, means "nobody remembered" and
//! never stops a download; it is replaced at the next checkpoint. (An entry
//! that is not a regular file of ours is refused when the download opens,
//! as at every name of the download.)

use std::net::SocketAddr;
use std::path::Path;

use minimodel_node::book::Source;
use minimodel_node::remembered::{MAX_REMEMBERED, MAX_REMEMBERED_ADDRS, RememberedPeer};
use minimodel_verifier::ModelId;
use minimodel_wire::PeerId;
use serde::{Deserialize, Serialize};

use super::dir::SafeDir;
use super::error::ResumeError;
use super::files::DownloadPaths;

/// The `format` of the file.
pub const PEERS_FORMAT: &str = "minimodel-peers-v0";
/// Largest file read.
pub const MAX_PEERS_FILE_BYTES: u64 = 64 * 1024;

/// Why a remembered-peers file is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersFileError {
    /// Larger than [`MAX_PEERS_FILE_BYTES`].
    #[error("larger than {MAX_PEERS_FILE_BYTES} bytes")]
    TooLarge,
    /// Not JSON of the format, or an unknown field.
    #[error("not a {PEERS_FORMAT} file: {0}")]
    Syntax(String),
    /// Another format.
    #[error("format {0:?}, not {PEERS_FORMAT}")]
    Format(String),
    /// More than [`MAX_REMEMBERED`] peers.
    #[error("{0} peers; at most {MAX_REMEMBERED}")]
    TooMany(usize),
    /// An entry that is not one.
    #[error("peer {index}: {why}")]
    Peer {
        /// Its place in the list, from 0.
        index: usize,
        /// What is wrong.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    format: String,
    peers: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    peer_id: String,
    addrs: Vec<String>,
    found_by: String,
    bytes: u64,
    seen_at: u64,
}

/// The file's text for `peers`.
pub fn peers_file_text(peers: &[RememberedPeer]) -> String {
    let body = FileBody {
        format: PEERS_FORMAT.to_owned(),
        peers: peers
            .iter()
            .map(|peer| FileEntry {
                peer_id: peer.id.to_string(),
                addrs: peer.addrs.iter().map(ToString::to_string).collect(),
                found_by: peer.found_by.as_str().to_owned(),
                bytes: peer.bytes,
                seen_at: peer.seen_at,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&body).expect("plain data serializes");
    text.push('\n');
    text
}

/// The peers `bytes` (a file's content) remember, checked whole: a file
/// with one bad entry is not used at all.
pub fn parse_peers_file(bytes: &[u8]) -> Result<Vec<RememberedPeer>, PeersFileError> {
    if bytes.len() as u64 > MAX_PEERS_FILE_BYTES {
        return Err(PeersFileError::TooLarge);
    }
    let body: FileBody =
        serde_json::from_slice(bytes).map_err(|e| PeersFileError::Syntax(e.to_string()))?;
    if body.format != PEERS_FORMAT {
        return Err(PeersFileError::Format(body.format));
    }
    if body.peers.len() > MAX_REMEMBERED {
        return Err(PeersFileError::TooMany(body.peers.len()));
    }
    let mut peers: Vec<RememberedPeer> = Vec::with_capacity(body.peers.len());
    for (index, entry) in body.peers.into_iter().enumerate() {
        let bad = |why: String| PeersFileError::Peer { index, why };
        let id: PeerId = entry
            .peer_id
            .parse()
            .map_err(|e| bad(format!("peer_id: {e}")))?;
        if peers.iter().any(|peer| peer.id == id) {
            return Err(bad(format!("peer {id} is listed twice")));
        }
        if entry.addrs.is_empty() || entry.addrs.len() > MAX_REMEMBERED_ADDRS {
            return Err(bad(format!(
                "{} addresses; 1 to {MAX_REMEMBERED_ADDRS}",
                entry.addrs.len()
            )));
        }
        let addrs = entry
            .addrs
            .iter()
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|_| bad(format!("{text:?} is not IP:PORT")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let found_by = Source::parse(&entry.found_by).ok_or_else(|| {
            bad(format!(
                "found_by {:?} is not a way of finding",
                entry.found_by
            ))
        })?;
        peers.push(RememberedPeer {
            id,
            addrs,
            found_by,
            bytes: entry.bytes,
            seen_at: entry.seen_at,
        });
    }
    Ok(peers)
}

/// Reads `name` in `dir`: `Ok(empty)` when there is none.
pub(crate) fn read_peers(
    dir: &SafeDir,
    name: &str,
) -> Result<Result<Vec<RememberedPeer>, PeersFileError>, ResumeError> {
    Ok(match dir.read(name, MAX_PEERS_FILE_BYTES + 1)? {
        None => Ok(Vec::new()),
        Some(bytes) => parse_peers_file(&bytes),
    })
}

/// Writes `peers` under `name` in `dir` (a whole-file write; the caller's
/// next directory sync makes it durable).
pub(crate) fn write_peers(
    dir: &SafeDir,
    name: &str,
    peers: &[RememberedPeer],
) -> Result<(), ResumeError> {
    dir.write_atomically(name, peers_file_text(peers).as_bytes())
}

/// The peers the download of `model_id` in `dir` remembers and would dial
/// now ([`minimodel_node::remembered::fresh`]). A missing directory or file
/// is an empty list; a file that cannot be used is its error.
pub fn remembered_peers(
    dir: &Path,
    model_id: &ModelId,
) -> Result<Vec<RememberedPeer>, PeersFileError> {
    let names = DownloadPaths::new(dir, model_id).names;
    let Ok(safe) = SafeDir::open(dir, false) else {
        return Ok(Vec::new());
    };
    match read_peers(&safe, &names.peers) {
        Ok(found) => found.map(|peers| minimodel_node::remembered::fresh(&peers, unix_now())),
        Err(error) => Err(PeersFileError::Syntax(error.to_string())),
    }
}

/// Seconds since the Unix epoch now (0 before it: a clock that wrong
/// makes every remembered peer stale, never fresh).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> RememberedPeer {
        RememberedPeer {
            id: PeerId([n; 32]),
            addrs: vec![
                format!("192.168.1.{n}:4433").parse().unwrap(),
                "[fd00::1]:4433".parse().unwrap(),
            ],
            found_by: Source::Lan,
            bytes: 1 << 20,
            seen_at: 1_800_000_000,
        }
    }

    #[test]
    fn a_list_reads_back_as_written() {
        let peers = vec![peer(1), peer(2)];
        let text = peers_file_text(&peers);
        assert!(
            text.starts_with("{\n  \"format\": \"minimodel-peers-v0\""),
            "{text}"
        );
        assert_eq!(parse_peers_file(text.as_bytes()), Ok(peers));
        assert_eq!(
            parse_peers_file(peers_file_text(&[]).as_bytes()),
            Ok(Vec::new())
        );
    }

    #[test]
    fn every_malformed_file_is_refused_with_its_reason() {
        let good: serde_json::Value =
            serde_json::from_str(&peers_file_text(&[peer(1), peer(2)])).unwrap();
        let with = |path: &[&str], value: serde_json::Value| {
            let mut body = good.clone();
            let mut at = &mut body;
            for key in &path[..path.len() - 1] {
                at = match key.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*key],
                };
            }
            let last = path[path.len() - 1];
            match last.parse::<usize>() {
                Ok(i) => at[i] = value,
                Err(_) => at[last] = value,
            }
            serde_json::to_vec(&body).unwrap()
        };
        let id1 = PeerId([1; 32]).to_string();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not a minimodel-peers-v0 file"),
            (b"[]".to_vec(), "not a minimodel-peers-v0 file"),
            (with(&["format"], "minimodel-peers-v9".into()), "format"),
            (with(&["extra"], 1.into()), "unknown field"),
            (
                with(&["peers", "0", "peer_id"], "nope".into()),
                "peer 0: peer_id",
            ),
            (with(&["peers", "1", "peer_id"], id1.into()), "listed twice"),
            (
                with(&["peers", "0", "addrs"], serde_json::json!([])),
                "0 addresses",
            ),
            (
                with(
                    &["peers", "0", "addrs"],
                    serde_json::json!([
                        "1.1.1.1:1",
                        "1.1.1.2:1",
                        "1.1.1.3:1",
                        "1.1.1.4:1",
                        "1.1.1.5:1"
                    ]),
                ),
                "5 addresses",
            ),
            (
                with(&["peers", "0", "addrs", "0"], "host:1".into()),
                "is not IP:PORT",
            ),
            (
                with(&["peers", "0", "found_by"], "rumour".into()),
                "not a way of finding",
            ),
            (
                with(&["peers", "0", "bytes"], (-1).into()),
                "not a minimodel-peers-v0 file",
            ),
            (
                with(&["peers", "0", "seen_at"], "now".into()),
                "not a minimodel-peers-v0 file",
            ),
        ];
        for (bytes, says) in cases {
            let error = parse_peers_file(&bytes).expect_err(says).to_string();
            assert!(error.contains(says), "{error} should say {says}");
        }
        let many: Vec<RememberedPeer> = (0..=MAX_REMEMBERED as u8).map(peer).collect();
        assert_eq!(
            parse_peers_file(peers_file_text(&many).as_bytes()),
            Err(PeersFileError::TooMany(MAX_REMEMBERED + 1))
        );
        let huge = vec![b' '; MAX_PEERS_FILE_BYTES as usize + 1];
        assert_eq!(parse_peers_file(&huge), Err(PeersFileError::TooLarge));
    }
}
