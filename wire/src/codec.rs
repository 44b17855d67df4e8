//! bincode 2 bodies with the protocol's fixed options, written straight into
//! a `BufMut` and read from a body slice that must be consumed exactly.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder, DecoderImpl};
use bincode::enc::write::{SizeWriter, Writer};
use bincode::enc::{Encode, EncoderImpl};
use bytes::BufMut;

use crate::error::{DecodeError, LocalMisuse};
use crate::frame::FRAME_PREFIX_LEN;
use crate::types::MessageType;

/// The bincode options of every body.
pub(crate) type WireConfig = Configuration<LittleEndian, Fixint, Limit<65536>>;

/// `standard().with_little_endian().with_fixed_int_encoding().with_limit::<65536>()`.
pub(crate) const WIRE_CONFIG: WireConfig = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<65536>();

/// What a body encoder writes into.
pub(crate) type BodyEncoder<W> = EncoderImpl<W, WireConfig>;

/// A message body that bincode-encodes its fields in wire order.
pub(crate) trait EncodeBody {
    fn encode_body<W: Writer>(
        &self,
        encoder: &mut BodyEncoder<W>,
    ) -> Result<(), bincode::error::EncodeError>;
}

struct BufMutWriter<'a, B>(&'a mut B);

impl<B: BufMut> Writer for BufMutWriter<'_, B> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.put_slice(bytes);
        Ok(())
    }
}

/// Writes one frame: length prefix, type byte, body. Nothing is written
/// unless the whole frame fits both its cap and `buf`. Returns the bytes
/// written.
pub(crate) fn encode_frame<T: EncodeBody>(
    value: &T,
    message_type: MessageType,
    max: u32,
    buf: &mut impl BufMut,
) -> Result<usize, LocalMisuse> {
    let encoding = |error: bincode::error::EncodeError| LocalMisuse::Encoding {
        message_type,
        detail: format!("{error:?}"),
    };
    let mut sizer = EncoderImpl::new(SizeWriter::default(), WIRE_CONFIG);
    value.encode_body(&mut sizer).map_err(encoding)?;
    let length = 1 + sizer.into_writer().bytes_written;
    if length > max as usize {
        return Err(LocalMisuse::FrameTooLong {
            message_type,
            length,
            max,
        });
    }
    let needed = FRAME_PREFIX_LEN + length;
    if buf.remaining_mut() < needed {
        return Err(LocalMisuse::BufferTooSmall {
            needed,
            available: buf.remaining_mut(),
        });
    }
    buf.put_u32_le(length as u32);
    buf.put_u8(message_type.as_byte());
    let mut encoder = EncoderImpl::new(BufMutWriter(buf), WIRE_CONFIG);
    value.encode_body(&mut encoder).map_err(encoding)?;
    Ok(needed)
}

/// Frame length (type byte and body) of a value, without writing it.
pub(crate) fn frame_len<T: EncodeBody>(value: &T) -> usize {
    let mut sizer = EncoderImpl::new(SizeWriter::default(), WIRE_CONFIG);
    // SizeWriter never fails, and no body type has a failing Encode impl.
    let _ = value.encode_body(&mut sizer);
    1 + sizer.into_writer().bytes_written
}

/// Reads from a body slice, remembering what is left.
struct BodyReader<'a> {
    rest: &'a [u8],
}

impl Reader for BodyReader<'_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(bytes.len()) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        };
        bytes.copy_from_slice(head);
        self.rest = tail;
        Ok(())
    }
}

/// Decodes the fields of one body in order; [`BodyDecoder::finish`] refuses
/// leftover bytes.
pub(crate) struct BodyDecoder<'a> {
    decoder: DecoderImpl<BodyReader<'a>, WireConfig, ()>,
    message_type: MessageType,
}

impl<'a> BodyDecoder<'a> {
    pub(crate) fn new(body: &'a [u8], message_type: MessageType) -> Self {
        BodyDecoder {
            decoder: DecoderImpl::new(BodyReader { rest: body }, WIRE_CONFIG, ()),
            message_type,
        }
    }

    pub(crate) fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The next field.
    pub(crate) fn field<T: Decode<()>>(&mut self) -> Result<T, DecodeError> {
        T::decode(&mut self.decoder).map_err(|error| DecodeError::Body {
            message_type: self.message_type,
            detail: format!("{error:?}"),
        })
    }

    /// The next field when it is a byte array (`[u8; N]`): its bytes as they
    /// are, as bincode encodes them, read without a per-field type check.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut bytes = [0u8; N];
        self.decoder
            .reader()
            .read(&mut bytes)
            .map_err(|error| DecodeError::Body {
                message_type: self.message_type,
                detail: format!("{error:?}"),
            })?;
        Ok(bytes)
    }

    /// The next `len` raw bytes (the elements of a `Vec<u8>` whose count
    /// was read and checked already).
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Vec<u8>, DecodeError> {
        let reader = self.decoder.reader();
        let rest: &'a [u8] = reader.rest;
        let Some((head, tail)) = rest.split_at_checked(len) else {
            return Err(DecodeError::Body {
                message_type: self.message_type,
                detail: format!("UnexpectedEnd {{ additional: {} }}", len - rest.len()),
            });
        };
        reader.rest = tail;
        Ok(head.to_vec())
    }

    /// Refuses bytes after the last field.
    pub(crate) fn finish(mut self) -> Result<(), DecodeError> {
        let trailing = self.decoder.reader().rest.len();
        if trailing != 0 {
            return Err(DecodeError::TrailingBytes {
                message_type: self.message_type,
                trailing,
            });
        }
        Ok(())
    }
}

/// Encodes `value` as one bincode field.
pub(crate) fn put<T: Encode + ?Sized, W: Writer>(
    encoder: &mut BodyEncoder<W>,
    value: &T,
) -> Result<(), bincode::error::EncodeError> {
    value.encode(encoder)
}
