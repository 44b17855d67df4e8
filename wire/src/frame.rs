//! Framing: `length: u32 LE` (the bytes that follow), `type: u8`, body.
//!
//! `1 <= length <= cap`, where the cap is [`MAX_CONTROL_FRAME`] on the
//! control stream and [`MAX_PIECE_HEADER_FRAME`] for the header of a piece
//! stream. A prefix over the cap is refused as soon as its 4 bytes are seen.

use bytes::{Buf, Bytes};

use crate::error::DecodeError;

/// Largest frame length (type byte and body) on the control stream.
pub const MAX_CONTROL_FRAME: u32 = 65536;
/// Largest frame length of the PieceHeader that opens a piece stream.
pub const MAX_PIECE_HEADER_FRAME: u32 = 2048;
/// Size of the length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;

/// Checks the length prefix at the start of `bytes`, if its 4 bytes are
/// there, and returns the size of the whole frame (prefix included) once
/// every byte of it is present.
pub(crate) fn complete_frame_len(bytes: &[u8], max: u32) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = bytes.first_chunk::<FRAME_PREFIX_LEN>() else {
        return Ok(None);
    };
    let length = check_length(u32::from_le_bytes(*prefix), max)?;
    let total = FRAME_PREFIX_LEN + length;
    Ok((bytes.len() >= total).then_some(total))
}

fn check_length(length: u32, max: u32) -> Result<usize, DecodeError> {
    if length == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if length > max {
        return Err(DecodeError::FrameTooLong { length, max });
    }
    Ok(length as usize)
}

/// Takes one whole frame from `buf` and hands its type byte and body to
/// `decode`, without copying when the frame is contiguous in `buf`. Errors if
/// `buf` ends inside the frame; on error, how much of `buf` was consumed is
/// unspecified (the stream is unusable anyway).
pub(crate) fn take_frame<T>(
    buf: &mut impl Buf,
    max: u32,
    decode: impl FnOnce(u8, &[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let available = buf.remaining();
    if available < FRAME_PREFIX_LEN {
        return Err(DecodeError::Incomplete {
            needed: FRAME_PREFIX_LEN,
            available,
        });
    }
    let length = check_length(buf.get_u32_le(), max)?;
    if buf.remaining() < length {
        return Err(DecodeError::Incomplete {
            needed: FRAME_PREFIX_LEN + length,
            available,
        });
    }
    if let Some((&type_byte, body)) = buf.chunk().get(..length).and_then(<[u8]>::split_first) {
        let value = decode(type_byte, body)?;
        buf.advance(length);
        return Ok(value);
    }
    let type_byte = buf.get_u8();
    let body: Bytes = buf.copy_to_bytes(length - 1);
    decode(type_byte, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_checked_before_the_body_arrives() {
        assert_eq!(complete_frame_len(&[1, 0, 0], 10), Ok(None));
        assert_eq!(complete_frame_len(&[2, 0, 0, 0, 9], 10), Ok(None));
        assert_eq!(complete_frame_len(&[2, 0, 0, 0, 9, 0], 10), Ok(Some(6)));
        assert_eq!(
            complete_frame_len(&[0xff, 0xff, 0xff, 0xff], 10),
            Err(DecodeError::FrameTooLong {
                length: u32::MAX,
                max: 10
            })
        );
        assert_eq!(
            complete_frame_len(&[0, 0, 0, 0], 10),
            Err(DecodeError::EmptyFrame)
        );
    }

    #[test]
    fn take_frame_reports_missing_bytes() {
        let mut short: &[u8] = &[5, 0, 0, 0, 9, 1];
        assert_eq!(
            take_frame(&mut short, 10, |_, _| Ok(())),
            Err(DecodeError::Incomplete {
                needed: 9,
                available: 6
            })
        );
        let mut tiny: &[u8] = &[5, 0];
        assert_eq!(
            take_frame(&mut tiny, 10, |_, _| Ok(())),
            Err(DecodeError::Incomplete {
                needed: 4,
                available: 2
            })
        );
        let mut whole: &[u8] = &[2, 0, 0, 0, 9, 7, 0xaa];
        let frame = take_frame(&mut whole, 10, |t, body| Ok((t, body.to_vec())));
        assert_eq!(frame, Ok((9, vec![7])));
        assert_eq!(whole, &[0xaa]);
        // A frame split over two chunks of a chained buffer.
        let mut chained = (&[2u8, 0, 0, 0, 9][..]).chain(&[8u8, 0xbb][..]);
        let frame = take_frame(&mut chained, 10, |t, body| Ok((t, body.to_vec())));
        assert_eq!(frame, Ok((9, vec![8])));
        assert_eq!(chained.chunk(), &[0xbb]);
    }
}
