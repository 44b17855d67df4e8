//! Whether a download fits, decided before its first byte.
//!
//! A download takes its artifact's whole size at once (its `.part` is
//! reserved at full size, `docs/resume.md`), so it fits when the
//! library's downloads with it stay within the quota and the disk has
//! room for it. A disk that fills anyway (another program writes to it)
//! stops the download cleanly with its verified part kept, as a one-shot
//! fetch does.

use std::path::Path;

/// Why a download does not fit; the numbers are in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    /// Over the library's quota.
    #[error(
        "the download needs {needed} bytes and the library's quota is {quota} bytes, of which {used} are taken by its downloads ({left} left)",
        left = quota.saturating_sub(*used)
    )]
    OverQuota {
        /// The artifact's size.
        needed: u64,
        /// What the library's downloads take.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// More than the disk has free.
    #[error("the download needs {needed} bytes and the disk has {free} bytes free")]
    DiskFull {
        /// The artifact's size.
        needed: u64,
        /// Free bytes for this user.
        free: u64,
    },
}

/// Decides: `needed` bytes more, with `used` taken by the library's
/// downloads, under `quota` (none: no quota), with `free` bytes free on
/// the disk (none: unknown).
pub fn check(
    needed: u64,
    used: u64,
    quota: Option<u64>,
    free: Option<u64>,
) -> Result<(), QuotaRefusal> {
    if let Some(quota) = quota {
        // A sum past u64::MAX is past every quota.
        if used.checked_add(needed).is_none_or(|total| total > quota) {
            return Err(QuotaRefusal::OverQuota {
                needed,
                used,
                quota,
            });
        }
    }
    if let Some(free) = free
        && needed > free
    {
        return Err(QuotaRefusal::DiskFull { needed, free });
    }
    Ok(())
}

/// Bytes free for this user on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    minimodel_swarm::platform::free_space(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_fits_exactly_and_not_a_byte_more() {
        assert_eq!(check(10, 90, Some(100), None), Ok(()));
        assert_eq!(
            check(11, 90, Some(100), None),
            Err(QuotaRefusal::OverQuota {
                needed: 11,
                used: 90,
                quota: 100
            })
        );
        assert_eq!(check(u64::MAX, 0, None, None), Ok(()));
        assert_eq!(
            check(u64::MAX, 1, Some(u64::MAX), None),
            Err(QuotaRefusal::OverQuota {
                needed: u64::MAX,
                used: 1,
                quota: u64::MAX
            })
        );
        assert_eq!(check(10, 0, None, Some(10)), Ok(()));
        assert_eq!(
            check(11, 0, Some(100), Some(10)),
            Err(QuotaRefusal::DiskFull {
                needed: 11,
                free: 10
            })
        );
    }

    #[test]
    fn the_refusal_gives_the_numbers() {
        let text = check(3 << 20, 1 << 20, Some(2 << 20), None)
            .unwrap_err()
            .to_string();
        assert!(text.contains("3145728"), "{text}");
        assert!(text.contains("2097152"), "{text}");
        assert!(text.contains("1048576 left"), "{text}");
    }

    #[test]
    fn a_directory_has_free_space() {
        let temp = tempfile::tempdir().unwrap();
        assert!(free_bytes(temp.path()).is_some());
        assert!(free_bytes(&temp.path().join("missing")).is_none());
    }
}
