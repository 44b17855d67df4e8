//! Entry points for the `wire_decode` fuzz target (`fuzz/`), kept here so
//! that ordinary tests can run the seed corpus through them too. Not part of
//! the stable API.
//!
//! Input layout: byte 0 holds flags (bit 0: we are the dialer, else the
//! listener; bit 1: the rest is a piece stream, else a control stream;
//! bit 2: the listener is unbound and binds at the dialer's Hello, the
//! dialer is a manifest query, or with bit 3 too a chunk list query of the
//! golden swarm's 10 chunks; bit 4 with bits 2 and 3: the list is listed,
//! asked for and served in ListedChunks; bit 5: the session speaks v3,
//! else v2), byte 1 seeds the sizes of the pieces the
//! stream is fed in (1 to 64 bytes), and the remaining bytes are the stream
//! as the peer sent it.
//!
//! Control streams run through a [`FrameDecoder`] into a [`ControlStream`]
//! of the golden swarm (`fixtures/wire/`), which answers like a real peer
//! (Hello, HaveBitfield, Reject, Manifest, ChunkHashes or ListedChunks in two parts,
//! farewell) so that inputs reach
//! every phase.
//! Piece streams run through a [`PieceStreamReader`] of a small swarm. The
//! asserts are invariants: a panic is a bug.

use crate::{
    BindError, ControlEvent, ControlStream, FrameDecoder, HaveBitfield, Message, PieceHeader,
    PieceStreamReader, RejectReason, Role, SwarmIdentity, SwarmParams,
};

/// What a fuzzed listener serves for any ManifestRequest, and what a
/// fuzzed manifest query asks for (the SHA-256 of nothing in particular).
const FUZZ_MANIFEST: &[u8] = b"model_id: tiny-slm-64m\n";
const FUZZ_MANIFEST_SHA256: [u8; 32] = [0x4d; 32];

/// What a fuzz input reached, for tests of the seed corpus.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Control messages decoded.
    pub messages: usize,
    /// Control events accepted by the state machine.
    pub events: usize,
    /// Both directions reached `Established`.
    pub established: bool,
    /// A whole piece was received.
    pub piece_received: bool,
    /// The error that ended the input, if any.
    pub error: Option<String>,
}

/// The swarm of the golden vectors: `tiny-slm-64m`, root `00 01 .. 1f`,
/// 10 000 000 bytes in 10 chunks of 1 MiB.
pub fn golden_swarm() -> Option<SwarmIdentity> {
    let params = SwarmParams::new(10_000_000, 1 << 20, 10).ok()?;
    SwarmIdentity::new("tiny-slm-64m", std::array::from_fn(|i| i as u8), params).ok()
}

/// The swarm of fuzzed piece streams: 1000 bytes in 16 chunks of 64.
pub fn piece_swarm() -> Option<SwarmParams> {
    SwarmParams::new(1000, 64, 16).ok()
}

/// Splits `stream` into pieces of 1 to 64 bytes, sizes drawn from `seed`.
fn pieces(stream: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut rest = stream;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (state % 64 + 1) as usize;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(piece)
    })
}

/// Runs one fuzz input.
pub fn wire_decode(data: &[u8]) -> FuzzOutcome {
    let [flags, seed, stream @ ..] = data else {
        return FuzzOutcome::default();
    };
    let version = if flags & 0x20 != 0 { 3 } else { 2 };
    if flags & 2 != 0 {
        piece_stream(stream, *seed, version)
    } else {
        let role = if flags & 1 != 0 {
            Role::Dialer
        } else {
            Role::Listener
        };
        let opening = match (flags & 4 != 0, flags & 8 != 0, flags & 16 != 0) {
            (false, _, _) => Opening::Swarm,
            (true, false, _) => Opening::Manifest,
            (true, true, false) => Opening::ChunkList,
            (true, true, true) => Opening::ListedChunkList,
        };
        control_stream(role, opening, stream, *seed, version)
    }
}

fn send(control: &mut ControlStream, message: &Message) {
    if let Err(error) = control.check_send(message) {
        panic!("the harness's own {message:?} was refused: {error}");
    }
    if let Err(error) = message.to_frame() {
        panic!("{message:?} passed check_send but does not encode: {error}");
    }
}

/// What a fuzzed dialer opens with (a listener is unbound unless `Swarm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Swarm,
    Manifest,
    ChunkList,
    ListedChunkList,
}

/// The chunk list a fuzzed listener serves: `H[i]` is 32 bytes of `i`.
fn fuzz_chunk_list(count: u32) -> Vec<[u8; 32]> {
    (0..count).map(|i| [i as u8; 32]).collect()
}

/// A listed chunk list's lengths, as a fuzzed listener serves them.
fn fuzz_chunk_length(chunk: usize) -> u32 {
    1000 + chunk as u32
}

fn control_stream(
    role: Role,
    opening: Opening,
    stream: &[u8],
    seed: u8,
    version: u16,
) -> FuzzOutcome {
    let v2_opening = opening != Opening::Swarm;
    let chunk_count = golden_swarm().map_or(1, |swarm| swarm.params().chunk_count());
    let mut hashes_received = 0usize;
    let mut outcome = FuzzOutcome::default();
    let Some(swarm) = golden_swarm().map(|swarm| swarm.with_version(version)) else {
        return outcome;
    };
    let Ok(hello) = swarm.hello(true, None, "fuzz") else {
        return outcome;
    };
    let hello = Message::Hello(hello);
    let bitfield = Message::HaveBitfield(HaveBitfield::new(swarm.params().chunk_count()));

    // One-shot decoding: every accepted frame re-encodes to its own bytes.
    let mut one_shot = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let before = rest;
        let Ok(message) = Message::decode(&mut rest) else {
            break;
        };
        let consumed = &before[..before.len() - rest.len()];
        match message.to_frame() {
            Ok(frame) => assert_eq!(&frame[..], consumed, "non-canonical encoding accepted"),
            Err(error) => panic!("decoded {message:?} does not re-encode: {error}"),
        }
        one_shot.push(message);
    }

    let mut control = match (role, v2_opening) {
        (Role::Listener, true) => ControlStream::listener(),
        (Role::Dialer, true) if opening == Opening::ChunkList => {
            ControlStream::chunk_list_query(FUZZ_MANIFEST_SHA256, chunk_count)
        }
        (Role::Dialer, true) if opening == Opening::ListedChunkList => {
            ControlStream::listed_chunk_list_query(FUZZ_MANIFEST_SHA256, chunk_count)
        }
        (Role::Dialer, true) => ControlStream::manifest_query(FUZZ_MANIFEST_SHA256),
        (_, false) => ControlStream::new(role, swarm.clone()),
    };
    if role == Role::Dialer {
        let first = match opening {
            Opening::Swarm => hello.clone(),
            Opening::Manifest => Message::ManifestRequest {
                manifest_sha256: FUZZ_MANIFEST_SHA256,
            },
            Opening::ChunkList | Opening::ListedChunkList => Message::ChunkListRequest {
                manifest_sha256: FUZZ_MANIFEST_SHA256,
            },
        };
        send(&mut control, &first);
    }
    let mut decoder = FrameDecoder::new();
    let mut incremental = Vec::new();
    'feed: for piece in pieces(stream, seed) {
        if let Err(error) = decoder.feed(piece) {
            outcome.error = Some(error.to_string());
            break;
        }
        loop {
            let message = match decoder.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(error) => {
                    if outcome.error.is_none()
                        && let Some(farewell) = control.farewell(&error.clone().into())
                    {
                        send(&mut control, &farewell);
                    }
                    outcome.error = Some(error.to_string());
                    break 'feed;
                }
            };
            outcome.messages += 1;
            incremental.push(message.clone());
            if outcome.error.is_some() {
                continue;
            }
            match control.on_receive(&message) {
                Ok(event) => {
                    outcome.events += 1;
                    match event {
                        ControlEvent::PeerHello(_) => {
                            if role == Role::Listener {
                                if control.swarm().is_none() {
                                    match control.bind(swarm.clone()) {
                                        Ok(()) => {}
                                        Err(BindError::Peer(violation)) => {
                                            outcome.error = Some(violation.to_string());
                                            if let Some(farewell) =
                                                control.farewell(&violation.into())
                                            {
                                                send(&mut control, &farewell);
                                            }
                                            continue;
                                        }
                                        Err(BindError::Local(misuse)) => {
                                            panic!("binding after the Hello was refused: {misuse}")
                                        }
                                    }
                                }
                                send(&mut control, &hello);
                            }
                            send(&mut control, &bitfield);
                        }
                        ControlEvent::ManifestRequested(_) => {
                            let manifest = Message::Manifest {
                                bytes: FUZZ_MANIFEST.to_vec(),
                            };
                            send(&mut control, &manifest);
                        }
                        ControlEvent::ChunkListRequested(_) => {
                            let list = fuzz_chunk_list(chunk_count);
                            let (head, tail) = list.split_at(list.len() / 2);
                            for (first, part) in [(0, head), (head.len(), tail)] {
                                let message = if opening == Opening::ListedChunkList {
                                    Message::ListedChunks {
                                        total: chunk_count,
                                        first: first as u32,
                                        chunks: (part.iter().enumerate())
                                            .map(|(i, hash)| (*hash, fuzz_chunk_length(first + i)))
                                            .collect(),
                                    }
                                } else {
                                    Message::ChunkHashes {
                                        total: chunk_count,
                                        first: first as u32,
                                        hashes: part.to_vec(),
                                    }
                                };
                                send(&mut control, &message);
                            }
                            assert!(control.is_closed(), "the whole list was sent");
                        }
                        ControlEvent::ChunkHashes {
                            first,
                            hashes,
                            lengths,
                            complete,
                        } => {
                            assert_eq!(first as usize, hashes_received, "in chunk order");
                            // A listed query takes ListedChunks only, and
                            // each hash comes with its length.
                            assert_eq!(lengths.is_some(), opening == Opening::ListedChunkList);
                            if let Some(lengths) = &lengths {
                                assert_eq!(lengths.len(), hashes.len());
                                assert!(lengths.iter().all(|len| *len > 0));
                            }
                            hashes_received += hashes.len();
                            assert!(hashes_received <= chunk_count as usize);
                            assert_eq!(complete, hashes_received == chunk_count as usize);
                        }
                        ControlEvent::Request(chunk) | ControlEvent::RequestFrom { chunk, .. }
                            if control.sent_phase() == crate::Phase::Established =>
                        {
                            let reject = Message::Reject {
                                chunk,
                                reason: RejectReason::Busy,
                            };
                            send(&mut control, &reject);
                        }
                        _ => {}
                    }
                    outcome.established |= control.is_established();
                }
                Err(violation) => {
                    outcome.error = Some(violation.to_string());
                    if let Some(farewell) = control.farewell(&violation.into()) {
                        send(&mut control, &farewell);
                    }
                }
            }
        }
    }
    // Feeding in pieces decodes the same messages as decoding at once.
    assert_eq!(
        incremental, one_shot,
        "FrameDecoder and Message::decode disagree"
    );
    if outcome.error.is_none()
        && let Err(error) = decoder.finish()
    {
        outcome.error = Some(error.to_string());
    }
    outcome
}

fn piece_stream(stream: &[u8], seed: u8, version: u16) -> FuzzOutcome {
    let mut outcome = FuzzOutcome::default();
    let Some(params) = piece_swarm() else {
        return outcome;
    };
    // One-shot header decoding: an accepted header re-encodes to its bytes.
    let mut rest = stream;
    if let Ok(header) = PieceHeader::decode(&mut rest) {
        let mut frame = Vec::new();
        match header.encode(&mut frame) {
            Ok(_) => assert_eq!(frame[..], stream[..stream.len() - rest.len()]),
            Err(error) => panic!("decoded {header:?} does not re-encode: {error}"),
        }
    }
    let mut reader = PieceStreamReader::for_version(params.clone(), version);
    for piece in pieces(stream, seed) {
        if let Err(error) = reader.feed(bytes::Bytes::copy_from_slice(piece)) {
            outcome.error = Some(error.to_string());
            break;
        }
    }
    match reader.finish() {
        Ok(piece) => {
            assert_eq!(piece.to_vec().len(), piece.header.body_len() as usize);
            assert!(version >= crate::FROM_VERSION || piece.header.from == 0);
            assert!(piece.header.from < piece.header.chunk_len);
            assert_eq!(piece.header.check_context(&params), Ok(()));
            assert!(params.check_index(piece.header.chunk).is_ok());
            outcome.piece_received = true;
        }
        Err(error) => {
            outcome.error.get_or_insert(error.to_string());
        }
    }
    outcome
}

/// Entry point of the `wire_datagram` fuzz target: any bytes as a delay
/// datagram. What decodes encodes to the same bytes; nothing panics.
pub fn wire_datagram(data: &[u8]) -> Option<crate::Datagram> {
    let datagram = crate::Datagram::decode(data).ok()?;
    assert_eq!(
        datagram.encode(),
        data,
        "a datagram re-encodes to its bytes"
    );
    Some(datagram)
}

/// Entry point of the `relay_message` fuzz target: any bytes as a stream of
/// relay protocol frames (`docs/relay.md`), read frame by frame until one
/// does not decode or the bytes end. Every frame that decodes encodes to
/// the same bytes; nothing panics. Also reads the bytes as one relay
/// datagram. Returns the messages decoded.
pub fn relay_message(data: &[u8]) -> Vec<crate::relay::RelayMessage> {
    use crate::relay::{RelayMessage, relay_datagram, write_relay_datagram};
    if let Some((channel, packet)) = relay_datagram(data) {
        let mut again = Vec::new();
        write_relay_datagram(channel, packet, &mut again);
        assert_eq!(again, data, "a relay datagram re-writes to its bytes");
    }
    let mut messages = Vec::new();
    let mut read = 0;
    while let Ok(Some((message, used))) = RelayMessage::decode(&data[read..]) {
        match message.encode() {
            Ok(frame) => assert_eq!(frame[..], data[read..read + used], "{message:?}"),
            Err(error) => panic!("decoded {message:?} does not re-encode: {error}"),
        }
        read += used;
        messages.push(message);
    }
    messages
}
