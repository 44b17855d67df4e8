//! [`HaveBitfield`]: which chunks a peer has, one bit per chunk.
//!
//! Bit order is MSB-first: chunk `i` is bit `7 - i % 8` of byte `i / 8`. A
//! bitfield of `n` chunks is `ceil(n / 8)` bytes and the spare low bits of
//! its last byte are zero. Every `HaveBitfield` value keeps these invariants:
//! the only ways to make one are [`HaveBitfield::new`], [`HaveBitfield::full`]
//! and the checking [`HaveBitfield::from_bytes`].

use crate::error::FieldError;
use crate::types::ChunkIndex;

/// One bit per chunk: set when the sender has that chunk (verified).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HaveBitfield {
    chunk_count: u32,
    bytes: Vec<u8>,
}

/// A chunk index at or past a bitfield's chunk count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{chunk} is out of range for a bitfield of {chunk_count} chunks")]
pub struct ChunkOutOfRange {
    /// The index.
    pub chunk: ChunkIndex,
    /// The chunk count.
    pub chunk_count: u32,
}

/// Bytes of a bitfield of `chunk_count` chunks.
pub(crate) fn bitfield_len(chunk_count: u32) -> usize {
    (chunk_count as usize).div_ceil(8)
}

/// The spare (must-be-zero) bits of the last byte, as a mask.
fn spare_mask(chunk_count: u32) -> u8 {
    match chunk_count % 8 {
        0 => 0,
        used => 0xff >> used,
    }
}

impl HaveBitfield {
    /// A bitfield of `chunk_count` chunks, none of them had.
    pub fn new(chunk_count: u32) -> Self {
        HaveBitfield {
            chunk_count,
            bytes: vec![0; bitfield_len(chunk_count)],
        }
    }

    /// A bitfield of `chunk_count` chunks, all of them had (a seeder's).
    pub fn full(chunk_count: u32) -> Self {
        let mut bytes = vec![0xff; bitfield_len(chunk_count)];
        if let Some(last) = bytes.last_mut() {
            *last &= !spare_mask(chunk_count);
        }
        HaveBitfield { chunk_count, bytes }
    }

    /// Checks `bytes` as a bitfield of `chunk_count` chunks: exactly
    /// `ceil(chunk_count / 8)` bytes, spare bits clear.
    pub fn from_bytes(bytes: Vec<u8>, chunk_count: u32) -> Result<Self, FieldError> {
        let expected = bitfield_len(chunk_count);
        if bytes.len() != expected {
            return Err(FieldError::BitfieldLength {
                chunk_count,
                expected,
                found: bytes.len(),
            });
        }
        if let Some(&last_byte) = bytes.last()
            && last_byte & spare_mask(chunk_count) != 0
        {
            return Err(FieldError::BitfieldSpareBits {
                chunk_count,
                last_byte,
            });
        }
        Ok(HaveBitfield { chunk_count, bytes })
    }

    /// Number of chunks covered.
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// The bytes as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `chunk` is set; `false` when it is out of range.
    pub fn get(&self, chunk: ChunkIndex) -> bool {
        if chunk.0 >= self.chunk_count {
            return false;
        }
        let index = chunk.0 as usize;
        self.bytes[index / 8] & (0x80 >> (index % 8)) != 0
    }

    /// Sets or clears `chunk`; returns its previous value.
    pub fn set(&mut self, chunk: ChunkIndex, have: bool) -> Result<bool, ChunkOutOfRange> {
        if chunk.0 >= self.chunk_count {
            return Err(ChunkOutOfRange {
                chunk,
                chunk_count: self.chunk_count,
            });
        }
        let index = chunk.0 as usize;
        let mask = 0x80 >> (index % 8);
        let byte = &mut self.bytes[index / 8];
        let before = *byte & mask != 0;
        if have {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        Ok(before)
    }

    /// Number of chunks set.
    pub fn count_ones(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every chunk is set.
    pub fn is_full(&self) -> bool {
        // The spare bits are zero: the last byte is full when every bit
        // but those is set. Stops at the first byte with a gap, which for
        // a peer still downloading is most often the first.
        let Some((last, whole)) = self.bytes.split_last() else {
            return true;
        };
        whole.iter().all(|byte| *byte == 0xff) && *last == !spare_mask(self.chunk_count)
    }

    /// The set chunks, in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = ChunkIndex> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, byte)| **byte != 0)
            .flat_map(|(byte_index, &byte)| {
                (0..8u32)
                    .filter(move |bit| byte & (0x80 >> bit) != 0)
                    .map(move |bit| ChunkIndex(byte_index as u32 * 8 + bit))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first_bit_order() {
        let mut bits = HaveBitfield::new(10);
        assert_eq!(bits.as_bytes(), &[0, 0]);
        assert_eq!(bits.set(ChunkIndex(0), true), Ok(false));
        assert_eq!(bits.set(ChunkIndex(9), true), Ok(false));
        assert_eq!(bits.as_bytes(), &[0x80, 0x40]);
        assert_eq!(bits.set(ChunkIndex(9), true), Ok(true));
        assert!(bits.get(ChunkIndex(0)) && bits.get(ChunkIndex(9)));
        assert!(!bits.get(ChunkIndex(1)) && !bits.get(ChunkIndex(10)));
        assert_eq!(bits.count_ones(), 2);
        let ones: Vec<_> = bits.iter_ones().collect();
        assert_eq!(ones, vec![ChunkIndex(0), ChunkIndex(9)]);
        assert_eq!(bits.set(ChunkIndex(0), false), Ok(true));
        assert_eq!(bits.as_bytes(), &[0x00, 0x40]);
    }

    #[test]
    fn set_out_of_range_is_an_error() {
        let mut bits = HaveBitfield::new(10);
        assert_eq!(
            bits.set(ChunkIndex(10), true),
            Err(ChunkOutOfRange {
                chunk: ChunkIndex(10),
                chunk_count: 10
            })
        );
        assert_eq!(bits.as_bytes(), &[0, 0]);
    }

    #[test]
    fn full_leaves_spare_bits_clear() {
        assert_eq!(HaveBitfield::full(10).as_bytes(), &[0xff, 0xc0]);
        assert_eq!(HaveBitfield::full(16).as_bytes(), &[0xff, 0xff]);
        assert_eq!(HaveBitfield::full(0).as_bytes(), &[] as &[u8]);
        assert!(HaveBitfield::full(10).is_full());
        assert_eq!(HaveBitfield::full(10).iter_ones().count(), 10);
        assert!(!HaveBitfield::new(10).is_full());
    }

    #[test]
    fn full_means_every_chunk_set_whatever_is_missing() {
        for chunk_count in 0..=25u32 {
            assert!(HaveBitfield::full(chunk_count).is_full(), "{chunk_count}");
            for missing in 0..chunk_count {
                let mut bits = HaveBitfield::full(chunk_count);
                bits.set(ChunkIndex(missing), false).unwrap();
                assert!(!bits.is_full(), "{chunk_count} without {missing}");
                let mut one = HaveBitfield::new(chunk_count);
                one.set(ChunkIndex(missing), true).unwrap();
                assert_eq!(one.is_full(), chunk_count == 1, "{chunk_count}: {missing}");
            }
        }
    }

    #[test]
    fn from_bytes_checks_length() {
        assert_eq!(
            HaveBitfield::from_bytes(vec![0; 3], 10),
            Err(FieldError::BitfieldLength {
                chunk_count: 10,
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            HaveBitfield::from_bytes(vec![0; 1], 10),
            Err(FieldError::BitfieldLength {
                chunk_count: 10,
                expected: 2,
                found: 1
            })
        );
    }

    #[test]
    fn from_bytes_checks_spare_bits() {
        assert_eq!(
            HaveBitfield::from_bytes(vec![0xff, 0x20], 10),
            Err(FieldError::BitfieldSpareBits {
                chunk_count: 10,
                last_byte: 0x20
            })
        );
        assert_eq!(
            HaveBitfield::from_bytes(vec![0xff, 0xc0], 10),
            Ok(HaveBitfield::full(10))
        );
        assert!(HaveBitfield::from_bytes(vec![0xff], 8).is_ok());
    }
}
