//! [`FrameDecoder`]: control-stream bytes in, whole messages out.

use bytes::BytesMut;

use crate::error::DecodeError;
use crate::frame::{MAX_CONTROL_FRAME, complete_frame_len};
use crate::message::Message;

/// Incremental decoder for the control stream: [`feed`](Self::feed) bytes as
/// they arrive, then pull [`next_message`](Self::next_message) until it
/// returns `None`.
///
/// A length prefix over [`MAX_CONTROL_FRAME`] (or of 0) is refused as soon as
/// its 4 bytes are in, without waiting for the body. Memory: what the caller
/// fed and has not pulled yet, of which at most one partial frame once every
/// complete message has been pulled. After an error every call returns that
/// error again: the stream is unusable.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: BytesMut,
    failed: Option<DecodeError>,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Appends bytes read from the stream and checks the length prefix of the
    /// next frame.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.check_failed()?;
        self.buffer.extend_from_slice(bytes);
        let checked = complete_frame_len(&self.buffer, MAX_CONTROL_FRAME).map(|_| ());
        self.record(checked)
    }

    /// The next whole message, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        self.check_failed()?;
        let result = self.pull();
        self.record(result)
    }

    fn pull(&mut self) -> Result<Option<Message>, DecodeError> {
        if complete_frame_len(&self.buffer, MAX_CONTROL_FRAME)?.is_none() {
            return Ok(None);
        }
        Message::decode(&mut self.buffer).map(Some)
    }

    /// Bytes fed and not yet returned as messages.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// The stream ended (FIN): it must end on a frame boundary.
    pub fn finish(&self) -> Result<(), DecodeError> {
        self.check_failed()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let needed = match self.buffer.first_chunk::<4>() {
            Some(prefix) => 4 + u32::from_le_bytes(*prefix) as usize,
            None => 4,
        };
        Err(DecodeError::Incomplete {
            needed,
            available: self.buffer.len(),
        })
    }

    fn check_failed(&self) -> Result<(), DecodeError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record<T>(&mut self, result: Result<T, DecodeError>) -> Result<T, DecodeError> {
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buffer.clear();
        }
        result
    }
}
