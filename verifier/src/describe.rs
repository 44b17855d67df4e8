//! Describing a `.slm` file: one read for the header, one two-threaded hash
//! pass, and the manifest v0 that binds the bytes to the publisher's
//! metadata. What `minimodel manifest` does, as a function.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::chunk::ChunkGeometry;
use crate::chunk_list::list_text;
use crate::digest::Sha256Digest;
use crate::hashing::hash_reader_in;
use crate::ids::{KeyId, ModelId, PublisherId};
use crate::manifest::{
    ChunkListRoute, ChunkScheme, ChunkSection, EvidenceStatus, Manifest, ManifestError,
    PeerHintStatus, Signature, default_chunk_size,
};
use crate::merkle::{MerkleTree, TreeError};
use crate::route::Route;
use crate::slm::{SlmError, read_slm_file};

/// What the publisher says about an artifact: every manifest field that is
/// not computed from the bytes.
#[derive(Debug, Clone)]
pub struct PublisherFields {
    /// `model-id`.
    pub model_id: ModelId,
    /// `display-name`.
    pub display_name: String,
    /// `publisher-id`.
    pub publisher_id: PublisherId,
    /// `key-id`.
    pub key_id: KeyId,
    /// `manifest-route`.
    pub manifest_route: Option<Route>,
    /// `model-card-route`.
    pub model_card_route: Option<Route>,
    /// `license-route`.
    pub license_route: Route,
    /// `evidence-route`.
    pub evidence_route: Route,
    /// `source-identity`.
    pub source_identity: String,
    /// `takedown-route`.
    pub takedown_route: Option<Route>,
    /// `evidence-status`.
    pub evidence_status: EvidenceStatus,
    /// `peer-hint-status`.
    pub peer_hint_status: PeerHintStatus,
    /// `chunk-list-route`, when the chunk list will be published.
    pub chunk_list_route: Option<Route>,
    /// `chunk-scheme`: how the file is cut into chunks.
    pub chunk_scheme: ChunkScheme,
}

impl PublisherFields {
    /// The fields with defaults for everything the contract does not
    /// require: display name = model id, key `unsigned`, no optional routes,
    /// source `not stated`, evidence `unreviewed`, peer hints `none`.
    pub fn new(
        model_id: ModelId,
        publisher_id: PublisherId,
        license_route: Route,
        evidence_route: Route,
    ) -> Self {
        Self {
            display_name: model_id.to_string(),
            model_id,
            publisher_id,
            key_id: KeyId::new("unsigned").unwrap_or_else(|_| unreachable!("a valid id")),
            manifest_route: None,
            model_card_route: None,
            license_route,
            evidence_route,
            source_identity: "not stated".to_owned(),
            takedown_route: None,
            evidence_status: EvidenceStatus::Unreviewed,
            peer_hint_status: PeerHintStatus::None,
            chunk_list_route: None,
            chunk_scheme: ChunkScheme::FixedSize,
        }
    }
}

/// A described artifact: its manifest, its tree and its chunk list.
#[derive(Debug, Clone)]
pub struct Description {
    /// The manifest v0.
    pub manifest: Manifest,
    /// The Merkle tree of its chunks.
    pub tree: MerkleTree,
    /// The chunk list file (one hex chunk hash per line).
    pub chunk_list: String,
}

/// Why a file could not be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The file is not a valid `.slm`.
    #[error("not a valid .slm file")]
    Slm(#[from] SlmError),
    /// Reading failed.
    #[error("cannot read the file")]
    Io(#[from] io::Error),
    /// The file is empty.
    #[error("the file is empty")]
    Empty(#[from] TreeError),
    /// The fields and the file do not make a valid manifest.
    #[error("the fields do not make a valid manifest")]
    Manifest(#[from] ManifestError),
}

/// Hashes `path` once and writes its manifest. `chunk_size` defaults to
/// [`default_chunk_size`]; `progress` receives the bytes hashed so far.
pub fn describe_file(
    path: &Path,
    fields: PublisherFields,
    chunk_size: Option<u32>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Description, DescribeError> {
    let slm = read_slm_file(path)?;
    let chunk_size = chunk_size.unwrap_or_else(|| default_chunk_size(slm.file_len));
    // A chunk size that cannot be valid is refused before the hash pass.
    crate::manifest::check_chunk_size_field(chunk_size)?;
    let geometry = match fields.chunk_scheme {
        ChunkScheme::FixedSize => ChunkGeometry::new(slm.file_len, chunk_size),
        ChunkScheme::SlmParts => {
            ChunkGeometry::slm_parts(slm.file_len, chunk_size, &slm.part_starts)
        }
    }
    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file has no chunk geometry"))?;
    let hashes = hash_reader_in(File::open(path)?, &geometry, progress)?;
    if hashes.bytes != slm.file_len || hashes.chunk_hashes.len() != geometry.chunk_count() as usize
    {
        return Err(DescribeError::Io(io::Error::other(
            "the file changed while it was read",
        )));
    }
    let tree = MerkleTree::from_chunk_hashes(hashes.chunk_hashes)?;
    let chunk_list = list_text(tree.chunk_hashes(), &geometry);
    let list_sha256 = Sha256Digest::of(chunk_list.as_bytes());
    let manifest = Manifest {
        model_id: fields.model_id,
        display_name: fields.display_name,
        publisher_id: fields.publisher_id,
        key_id: fields.key_id,
        manifest_route: fields.manifest_route,
        model_card_route: fields.model_card_route,
        license_route: fields.license_route,
        evidence_route: fields.evidence_route,
        source_identity: fields.source_identity,
        takedown_route: fields.takedown_route,
        artifact_bytes: hashes.bytes,
        artifact_sha256: hashes.sha256,
        quantization: slm.quantization,
        model_shape: slm.shape,
        tokenizer_sha256: slm.tokenizer_sha256,
        tensor_layout_sha256: slm.tensor_layout_sha256,
        evidence_status: fields.evidence_status,
        peer_hint_status: fields.peer_hint_status,
        signature: Signature::UnsignedPlaceholderV0,
        chunks: ChunkSection {
            scheme: fields.chunk_scheme,
            chunk_size,
            chunk_count: u64::from(geometry.chunk_count()),
            merkle_root: tree.root(),
            // A listed scheme names its list always: the lengths are in it.
            chunk_list: match (fields.chunk_list_route, fields.chunk_scheme.is_listed()) {
                (None, false) => None,
                (route, _) => Some(ChunkListRoute {
                    route,
                    sha256: list_sha256,
                }),
            },
        },
    };
    manifest.validate()?;
    Ok(Description {
        manifest,
        tree,
        chunk_list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::verify_local_file;
    use crate::slm::{FixtureSpec, write_fixture};

    fn fields() -> PublisherFields {
        PublisherFields::new(
            "described".parse().unwrap(),
            "acme".parse().unwrap(),
            "https://example.org/license".parse().unwrap(),
            "https://example.org/evidence".parse().unwrap(),
        )
    }

    #[test]
    fn a_described_file_verifies_against_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.slm");
        let mut file = std::fs::File::create(&path).unwrap();
        write_fixture(&mut file, &FixtureSpec::new(300_000, 4)).unwrap();
        let mut with_list = fields();
        with_list.chunk_list_route = Some("https://example.org/chunks.txt".parse().unwrap());
        let description = describe_file(&path, with_list, Some(16384), &|_| {}).unwrap();
        assert_eq!(description.manifest.chunks.chunk_count, 19);
        assert_eq!(description.chunk_list.lines().count(), 19);
        let text = description.manifest.to_text();
        assert_eq!(Manifest::parse(&text).unwrap(), description.manifest);
        let verified = verify_local_file(&description.manifest, &path, &|_| {}).unwrap();
        assert_eq!(verified.tree().root(), description.tree.root());
    }

    #[test]
    fn a_bad_chunk_size_or_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.slm");
        let mut file = std::fs::File::create(&path).unwrap();
        write_fixture(&mut file, &FixtureSpec::new(100_000, 4)).unwrap();
        assert!(matches!(
            describe_file(&path, fields(), Some(3000), &|_| {}),
            Err(DescribeError::Manifest(_))
        ));
        std::fs::write(&path, b"not an slm").unwrap();
        assert!(matches!(
            describe_file(&path, fields(), None, &|_| {}),
            Err(DescribeError::Slm(_))
        ));
    }
}
