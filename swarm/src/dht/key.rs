//! The swarm key: where a swarm is announced on the DHT
//! (`docs/transport.md`, section 6).

use std::fmt;

use minimodel_verifier::Sha256Digest;
use sha2::{Digest, Sha256};

/// The label hashed in front of the Merkle root. Versioned, so a change of
/// the derivation makes new keys instead of mixing swarms.
pub const SWARM_KEY_LABEL: &[u8; 16] = b"minimodel-dht-v0";

/// The 20-byte DHT key (a BEP 5 info-hash) of the swarm that serves one
/// artifact: the first 20 bytes of
/// `SHA-256("minimodel-dht-v0" || merkle_root)`.
///
/// Derived from the manifest's Merkle root, not its model id: the root
/// commits to every byte and to the chunk size, so every peer found under a
/// key serves exactly the chunks its proofs check, while a model id is a
/// name that anyone can give another artifact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwarmKey([u8; 20]);

impl SwarmKey {
    /// The key of the swarm whose chunks prove to `merkle_root`.
    pub fn of(merkle_root: &Sha256Digest) -> Self {
        let mut hash = Sha256::new();
        hash.update(SWARM_KEY_LABEL);
        hash.update(merkle_root.as_bytes());
        let digest = hash.finalize();
        let mut key = [0u8; 20];
        key.copy_from_slice(&digest[..20]);
        Self(key)
    }

    /// The 20 bytes, as sent in `get_peers` and `announce_peer`.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

/// 40 lowercase hex digits.
impl fmt::Display for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn root_of(manifest: &str) -> Sha256Digest {
        minimodel_verifier::Manifest::parse_bytes(fixture(manifest).as_bytes())
            .unwrap()
            .chunks
            .merkle_root
    }

    /// The vectors of `fixtures/dht/swarm-key-vectors.txt`, written by an
    /// independent implementation (`fixtures/dht/make_vectors.py`).
    #[test]
    fn the_keys_match_the_independent_vectors() {
        let vectors = [
            (
                "manifest/good-canonical.manifest",
                "7c60c6565956960d53d9405d9cf80388faba64acca2eefe39195328a3fd49dea",
                "26a36c5dea9fa90360388072abca298163b58128",
            ),
            (
                "resume/vector.manifest",
                "1c7c724f609c2c5f25986482fb9c2785d205f3561cc47695605bf3405d3f9805",
                "07bcc74fb1833e6a304accdfd8f5d9fb73fe60a3",
            ),
        ];
        let file = fixture("dht/swarm-key-vectors.txt");
        for (manifest, root, key) in vectors {
            let root: Sha256Digest = root.parse().unwrap();
            assert_eq!(root_of(manifest), root, "{manifest}");
            assert_eq!(SwarmKey::of(&root).to_string(), key, "{manifest}");
            // The file holds the same vector, so this test and the script
            // cannot drift apart.
            let block = format!("manifest {manifest}\nroot {root}\n");
            assert!(file.contains(&block), "{manifest} in the vectors file");
            assert!(
                file.contains(&format!("key {key}\n")),
                "{key} in the vectors file"
            );
        }
    }

    #[test]
    fn the_label_is_sixteen_ascii_bytes() {
        assert!(SWARM_KEY_LABEL.is_ascii());
        assert_eq!(SWARM_KEY_LABEL.len(), 16);
    }

    #[test]
    fn every_root_bit_changes_the_key() {
        let root = Sha256Digest([0x5a; 32]);
        let key = SwarmKey::of(&root);
        for byte in 0..32 {
            for bit in 0..8 {
                let mut flipped = root;
                flipped.0[byte] ^= 1 << bit;
                assert_ne!(SwarmKey::of(&flipped), key, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn displays_as_forty_lowercase_hex_digits() {
        let text = SwarmKey::of(&Sha256Digest([0; 32])).to_string();
        assert_eq!(text.len(), 40);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
