//! A misbehaving peer for tests. It speaks the piece protocol over real QUIC
//! (the crate's own transport, so TLS and ALPN are genuine) but encodes
//! messages without the control-stream state machine, so it can send
//! anything: lies about the swarm, wrong bitfields, bad chunks, garbage
//! frames, floods, stalls, early disconnects.
//!
//! Two halves:
//! - [`RawSession`]: one control stream driven by hand, for a hostile
//!   peer that dials (a seeder under attack) or is dialed;
//! - [`HostileSeeder`]: a listener that a fetcher dials, which answers the
//!   handshake and serves requests according to a [`Lie`], and counts what
//!   happened to it in [`HostileStats`].
//!
//! Test-only: it lives under `tests/` and never ships in the CLI.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use minimodel_swarm::fetch::swarm_of;
use minimodel_swarm::transport::{self, Identity, TransportTuning};
use minimodel_wire::{
    ChunkIndex, FrameDecoder, GoodbyeReason, HaveBitfield, Message, PeerAddr, PeerEntry, PeerId,
    PieceHeader, SwarmIdentity,
};
use tokio::task::JoinHandle;

use super::Artifact;

/// A small deterministic generator (SplitMix64) for ids and junk.
pub use minimodel_node::rng::SplitMix64 as Rng;

/// A random peer id.
pub fn random_peer_id(rng: &mut Rng) -> PeerId {
    let mut id = [0u8; 32];
    rng.fill(&mut id);
    PeerId(id)
}

/// Binds a QUIC endpoint for a hostile peer on `ip` (any 127.x.y.z address
/// reaches a loopback listener, so tests can play several source
/// addresses).
pub fn endpoint_on(ip: IpAddr, identity: &Identity, tuning: &TransportTuning) -> quinn::Endpoint {
    transport::bind_endpoint(SocketAddr::new(ip, 0), identity, tuning)
        .expect("bind a test endpoint")
}

/// The receiving half of a control stream.
pub struct ControlReader {
    pub recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl ControlReader {
    pub fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(),
        }
    }

    /// The next message, `Ok(None)` at the end of the stream, an error when
    /// the bytes are malformed, the connection broke or `wait` passed.
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<Message>, String> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(message) = self.decoder.next_message().map_err(|e| e.to_string())? {
                    return Ok(Some(message));
                }
                match self.recv.read_chunk(64 * 1024, true).await {
                    Ok(Some(chunk)) => {
                        self.decoder.feed(&chunk.bytes).map_err(|e| e.to_string())?
                    }
                    Ok(None) => return Ok(None),
                    Err(error) => return Err(error.to_string()),
                }
            }
        })
        .await
        .map_err(|_| "timed out".to_owned())?
    }
}

/// A control stream driven by hand: nothing checks what is sent.
pub struct RawSession {
    pub connection: quinn::Connection,
    pub send: quinn::SendStream,
    pub reader: ControlReader,
    /// Keeps a dialer's own endpoint alive.
    _endpoint: Option<quinn::Endpoint>,
}

/// What [`RawSession::dial`] needs besides the address.
pub struct Dialer {
    pub identity: Identity,
    pub endpoint: quinn::Endpoint,
    pub tuning: TransportTuning,
}

impl Dialer {
    /// A fresh identity and endpoint on `ip`.
    pub fn new(ip: IpAddr) -> Self {
        Self::with_tuning(ip, TransportTuning::default())
    }

    pub fn with_tuning(ip: IpAddr, tuning: TransportTuning) -> Self {
        let identity = Identity::generate().expect("generate a key");
        let endpoint = endpoint_on(ip, &identity, &tuning);
        Self {
            identity,
            endpoint,
            tuning,
        }
    }

    /// A QUIC connection to `peer` (TLS done, no control stream yet).
    pub async fn connect(&self, peer: &PeerAddr) -> Result<quinn::Connection, String> {
        transport::connect(&self.endpoint, peer, &self.identity, &self.tuning)
            .await
            .map_err(|e| e.to_string())
    }

    /// A connection with its control stream opened (nothing sent yet: the
    /// listener learns of the stream with its first byte).
    pub async fn session(&self, peer: &PeerAddr) -> Result<RawSession, String> {
        self.session_as(&self.identity, peer).await
    }

    /// [`Dialer::session`] from the same endpoint under another identity,
    /// so one socket can play many peers.
    pub async fn session_as(
        &self,
        identity: &Identity,
        peer: &PeerAddr,
    ) -> Result<RawSession, String> {
        let connection = transport::connect(&self.endpoint, peer, identity, &self.tuning)
            .await
            .map_err(|e| e.to_string())?;
        let (send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        Ok(RawSession {
            connection,
            send,
            reader: ControlReader::new(recv),
            _endpoint: Some(self.endpoint.clone()),
        })
    }
}

/// How a handshake attempt as a dialer ended.
#[derive(Debug)]
pub enum DialOutcome {
    /// Both Hellos and both bitfields exchanged.
    Established {
        hello: minimodel_wire::Hello,
        bitfield: HaveBitfield,
    },
    /// The listener answered with a HelloReject.
    Rejected(minimodel_wire::HelloRejectReason),
    /// Something else came back (or nothing).
    Other(String),
}

impl RawSession {
    /// Writes a message without asking the state machine.
    pub async fn send(&mut self, message: &Message) -> Result<(), String> {
        let mut frame = BytesMut::new();
        message.encode(&mut frame).map_err(|e| e.to_string())?;
        self.send_raw(&frame).await
    }

    /// Writes raw bytes on the control stream.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.send.write_all(bytes).await.map_err(|e| e.to_string())
    }

    /// The next message (see [`ControlReader::recv`]).
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<Message>, String> {
        self.reader.recv(wait).await
    }

    /// The dialer's handshake with `hello` and `bitfield`.
    pub async fn handshake(
        &mut self,
        hello: minimodel_wire::Hello,
        bitfield: HaveBitfield,
    ) -> DialOutcome {
        let wait = Duration::from_secs(10);
        if let Err(error) = self.send(&Message::Hello(hello)).await {
            return DialOutcome::Other(error);
        }
        let hello = match self.recv(wait).await {
            Ok(Some(Message::Hello(hello))) => hello,
            Ok(Some(Message::HelloReject { reason, .. })) => return DialOutcome::Rejected(reason),
            other => return DialOutcome::Other(format!("{other:?}")),
        };
        if let Err(error) = self.send(&Message::HaveBitfield(bitfield)).await {
            return DialOutcome::Other(error);
        }
        match self.recv(wait).await {
            Ok(Some(Message::HaveBitfield(bitfield))) => {
                DialOutcome::Established { hello, bitfield }
            }
            other => DialOutcome::Other(format!("{other:?}")),
        }
    }

    /// Reads control messages until the peer ends the session or `wait`
    /// passes with nothing new; returns what came and how it ended.
    pub async fn drain(&mut self, wait: Duration) -> (Vec<Message>, String) {
        let mut messages = Vec::new();
        loop {
            match self.recv(wait).await {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => return (messages, "end of stream".into()),
                Err(error) => return (messages, error),
            }
        }
    }

    /// Waits until the connection is closed (by either side) or `wait`
    /// passes; true if it closed.
    pub async fn closed_within(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.connection.closed())
            .await
            .is_ok()
    }
}

/// The swarm of an artifact, and one with a field changed.
pub fn swarm(artifact: &Artifact) -> SwarmIdentity {
    let geometry = minimodel_verifier::ChunkGeometry::of_manifest(&artifact.manifest).unwrap();
    swarm_of(&artifact.manifest, &geometry).expect("a fetchable manifest")
}

/// A bitfield of `count` chunks with every bit set.
pub fn full(count: u32) -> HaveBitfield {
    HaveBitfield::full(count)
}

/// What a [`HostileSeeder`] does wrong.
#[derive(Debug, Clone)]
pub enum Lie {
    /// Nothing: it serves every request correctly (a control for tests).
    Honest,
    /// Accepts the QUIC connection and closes it before the control stream.
    CloseBeforeControlStream,
    /// Reads the dialer's Hello, then closes the connection.
    CloseAfterPeerHello,
    /// Sends its Hello, then closes before its bitfield.
    CloseAfterOwnHello,
    /// Sends its Hello, then says nothing more.
    StallAfterOwnHello,
    /// Finishes the handshake, then closes at once.
    CloseAfterBitfield,
    /// Answers with a Hello for another model id.
    WrongModelId,
    /// Answers with a Hello for another Merkle root.
    WrongRoot,
    /// Sends a bitfield for eight more chunks than the swarm has.
    BitfieldChunkCount,
    /// Sends a bitfield frame whose byte count does not match its own
    /// chunk count.
    BitfieldMalformed,
    /// Serves requested chunks with every byte flipped.
    CorruptBytes,
    /// Serves the first this many requests honestly, then flips bytes.
    CorruptAfter(usize),
    /// Serves requested chunks with a wrong first proof hash.
    WrongProof,
    /// Claims no chunk, then pushes chunk 0 on a piece stream unasked.
    Unrequested,
    /// Claims every chunk and never serves one.
    ServeNothing,
    /// Sends the header and half of each requested chunk, then nothing.
    StallMidChunk,
    /// Sends the header, then 1 KiB of the chunk every 100 ms.
    Trickle,
    /// Sends each requested chunk followed by one byte too many.
    TooLong,
    /// Sends each requested chunk on this many piece streams at once.
    DuplicateStreams(usize),
    /// After the handshake, writes these raw bytes on the control stream.
    ControlBytes(Bytes),
    /// Opens the piece stream of the first requested chunk with these raw
    /// bytes instead of a header.
    PieceBytes(Bytes),
    /// Answers a chunk list query with these messages (and nothing else:
    /// a Hello is not answered).
    ChunkListAnswer(Vec<Message>),
    /// Claims no chunk and sends a Peers message of `entries` entries every
    /// `every`, each entry a fresh id at `to`.
    PeersFlood {
        to: SocketAddr,
        every: Duration,
        entries: usize,
    },
}

/// What happened to a [`HostileSeeder`].
#[derive(Debug, Default)]
pub struct HostileStats {
    /// QUIC connections accepted.
    pub connections: AtomicUsize,
    /// Requests received.
    pub requests: AtomicUsize,
    /// Requests whose answer has run to its end (every stream's outcome
    /// counted below).
    pub answers_done: AtomicUsize,
    /// Piece streams opened.
    pub streams_opened: AtomicUsize,
    /// Piece streams the receiver stopped (STOP_SENDING).
    pub streams_stopped: AtomicUsize,
    /// Piece streams delivered whole and acknowledged.
    pub streams_completed: AtomicUsize,
    /// Piece streams whose connection ended before the receiver either
    /// stopped or acknowledged them.
    pub streams_lost: AtomicUsize,
    /// Peers messages sent.
    pub peers_messages: AtomicUsize,
    /// Goodbye reasons received.
    pub goodbyes: Mutex<Vec<GoodbyeReason>>,
    /// How each connection ended, as the hostile side saw it.
    pub closes: Mutex<Vec<String>>,
}

impl HostileStats {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// The bytes and proofs a hostile seeder can serve.
struct Content {
    swarm: SwarmIdentity,
    data: Bytes,
    proofs: Vec<Vec<[u8; 32]>>,
}

impl Content {
    fn of(artifact: &Artifact) -> Self {
        let data = Bytes::from(std::fs::read(&artifact.path).expect("read the fixture"));
        let tree = artifact.verified.tree();
        let count = artifact.manifest.chunks.chunk_count as u32;
        let proofs = (0..count)
            .map(|i| {
                tree.proof(i)
                    .expect("a proof per chunk")
                    .into_iter()
                    .map(|digest| digest.0)
                    .collect()
            })
            .collect();
        Self {
            swarm: swarm(artifact),
            data,
            proofs,
        }
    }

    fn chunk(&self, chunk: u32) -> Bytes {
        let size = self.swarm.params().chunk_size() as usize;
        let start = chunk as usize * size;
        let end = (start + size).min(self.data.len());
        self.data.slice(start..end)
    }

    fn header(&self, chunk: u32) -> Bytes {
        let header = PieceHeader {
            chunk: ChunkIndex(chunk),
            from: 0,
            chunk_len: self.chunk(chunk).len() as u32,
            proof: self.proofs[chunk as usize].clone(),
        };
        let mut frame = BytesMut::new();
        header.encode(&mut frame).expect("encode a header");
        frame.freeze()
    }
}

/// The header frame and the bytes of one chunk, as an honest peer would
/// send them.
pub fn piece(artifact: &Artifact, chunk: u32) -> (Bytes, Bytes) {
    let content = Content::of(artifact);
    (content.header(chunk), content.chunk(chunk))
}

/// A listening peer that lies. Dropping it closes its endpoint.
pub struct HostileSeeder {
    pub peer: PeerAddr,
    pub stats: Arc<HostileStats>,
    endpoint: quinn::Endpoint,
    task: JoinHandle<()>,
}

impl Drop for HostileSeeder {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"test over");
    }
}

impl HostileSeeder {
    /// Listens on 127.0.0.1 and lies with `lie` to every dialer.
    pub fn start(artifact: &Artifact, lie: Lie) -> Self {
        let identity = Arc::new(Identity::generate().expect("generate a key"));
        let tuning = TransportTuning::default();
        let endpoint = endpoint_on([127, 0, 0, 1].into(), &identity, &tuning);
        let peer = PeerAddr {
            id: identity.peer_id(),
            addr: endpoint.local_addr().expect("bound"),
        };
        let stats = Arc::new(HostileStats::default());
        let content = Arc::new(Content::of(artifact));
        let accept = endpoint.clone();
        let task_stats = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let identity = Arc::clone(&identity);
                let tuning = tuning.clone();
                let stats = Arc::clone(&task_stats);
                let content = Arc::clone(&content);
                let lie = lie.clone();
                tokio::spawn(async move {
                    let Ok((connection, _)) = transport::accept(incoming, &identity, &tuning).await
                    else {
                        return;
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let watcher = connection.clone();
                    let close_stats = Arc::clone(&stats);
                    tokio::spawn(async move {
                        let reason = watcher.closed().await;
                        close_stats
                            .closes
                            .lock()
                            .expect("stats")
                            .push(reason.to_string());
                    });
                    serve(connection, lie, content, stats).await;
                });
            }
        });
        Self {
            peer,
            stats,
            endpoint,
            task,
        }
    }
}

/// One connection of a hostile seeder: the handshake, then the lie.
async fn serve(
    connection: quinn::Connection,
    lie: Lie,
    content: Arc<Content>,
    stats: Arc<HostileStats>,
) {
    if matches!(lie, Lie::CloseBeforeControlStream) {
        connection.close(0u32.into(), b"bye");
        return;
    }
    let Ok((send, recv)) = connection.accept_bi().await else {
        return;
    };
    let mut session = RawSession {
        connection: connection.clone(),
        send,
        reader: ControlReader::new(recv),
        _endpoint: None,
    };
    let wait = Duration::from_secs(10);
    let first = session.recv(wait).await;
    if let Lie::ChunkListAnswer(answer) = &lie {
        if let Ok(Some(Message::ChunkListRequest { .. })) = first {
            for message in answer {
                if session.send(message).await.is_err() {
                    return;
                }
            }
            let _ = session.send.finish();
            let _ = tokio::time::timeout(wait, connection.closed()).await;
        }
        return;
    }
    let Ok(Some(Message::Hello(_))) = first else {
        return;
    };
    if matches!(lie, Lie::CloseAfterPeerHello) {
        connection.close(0u32.into(), b"bye");
        return;
    }
    let mut swarm = content.swarm.clone();
    if matches!(lie, Lie::WrongModelId) {
        swarm = SwarmIdentity::new(
            "another-model",
            *swarm.merkle_root(),
            swarm.params().clone(),
        )
        .expect("a valid id");
    }
    if matches!(lie, Lie::WrongRoot) {
        let mut root = *swarm.merkle_root();
        root[0] ^= 1;
        swarm =
            SwarmIdentity::new(swarm.model_id(), root, swarm.params().clone()).expect("a valid id");
    }
    let serving = true;
    let hello = swarm
        .hello(serving, None, "hostile/0")
        .expect("a valid hello");
    if session.send(&Message::Hello(hello)).await.is_err() {
        return;
    }
    match lie {
        Lie::CloseAfterOwnHello => {
            connection.close(0u32.into(), b"bye");
            return;
        }
        Lie::StallAfterOwnHello => {
            connection.closed().await;
            return;
        }
        _ => {}
    }
    let count = swarm.params().chunk_count();
    let sent = match &lie {
        Lie::BitfieldChunkCount => session.send(&Message::HaveBitfield(full(count + 8))).await,
        Lie::BitfieldMalformed => {
            // type 0x03, chunk_count, then one byte more than it needs.
            let bytes = count.div_ceil(8) as usize + 1;
            let mut frame = Vec::new();
            frame.extend_from_slice(&((1 + 4 + 8 + bytes) as u32).to_le_bytes());
            frame.push(0x03);
            frame.extend_from_slice(&count.to_le_bytes());
            frame.extend_from_slice(&(bytes as u64).to_le_bytes());
            frame.extend(std::iter::repeat_n(0u8, bytes));
            session.send_raw(&frame).await
        }
        Lie::Unrequested | Lie::PeersFlood { .. } => {
            session
                .send(&Message::HaveBitfield(HaveBitfield::new(count)))
                .await
        }
        _ => session.send(&Message::HaveBitfield(full(count))).await,
    };
    if sent.is_err() {
        return;
    }
    match session.recv(wait).await {
        Ok(Some(Message::HaveBitfield(_))) => {}
        Ok(Some(Message::Goodbye { reason })) => {
            stats.goodbyes.lock().expect("stats").push(reason);
            return;
        }
        _ => return,
    }
    match &lie {
        Lie::CloseAfterBitfield => {
            connection.close(0u32.into(), b"bye");
            return;
        }
        Lie::ControlBytes(bytes) => {
            let _ = session.send.write_chunk(bytes.clone()).await;
        }
        Lie::Unrequested => {
            let content = Arc::clone(&content);
            let stats = Arc::clone(&stats);
            let connection = connection.clone();
            tokio::spawn(async move {
                push(&connection, content.header(0), content.chunk(0), &stats).await;
            });
        }
        Lie::PeersFlood { to, every, entries } => {
            let (to, every, count) = (*to, *every, *entries);
            let flood_stats = Arc::clone(&stats);
            let RawSession {
                send: mut flood,
                reader,
                ..
            } = session;
            tokio::spawn(async move {
                let mut rng = Rng(7);
                loop {
                    let entries = (0..count)
                        .map(|_| PeerEntry {
                            id: random_peer_id(&mut rng),
                            addr: to,
                            flags: minimodel_wire::PeerFlags::default(),
                        })
                        .collect();
                    let mut frame = BytesMut::new();
                    if (Message::Peers { entries }).encode(&mut frame).is_err()
                        || flood.write_all(&frame).await.is_err()
                    {
                        return;
                    }
                    flood_stats.peers_messages.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(every).await;
                }
            });
            return read_requests(reader, connection, lie, content, stats).await;
        }
        _ => {}
    }
    read_requests(session.reader, connection, lie, content, stats).await;
}

/// After the handshake: answers every request according to the lie.
async fn read_requests(
    mut reader: ControlReader,
    connection: quinn::Connection,
    lie: Lie,
    content: Arc<Content>,
    stats: Arc<HostileStats>,
) {
    let first_request = AtomicUsize::new(0);
    loop {
        let message = match reader.recv(Duration::from_secs(3600)).await {
            Ok(Some(message)) => message,
            _ => return,
        };
        match message {
            Message::Request { chunk } => {
                stats.requests.fetch_add(1, Ordering::SeqCst);
                let ordinal = first_request.fetch_add(1, Ordering::SeqCst);
                let connection = connection.clone();
                let content = Arc::clone(&content);
                let stats = Arc::clone(&stats);
                let lie = lie.clone();
                tokio::spawn(async move {
                    answer(&connection, &lie, chunk.0, ordinal, &content, &stats).await;
                    stats.answers_done.fetch_add(1, Ordering::SeqCst);
                });
            }
            Message::Goodbye { reason } => {
                stats.goodbyes.lock().expect("stats").push(reason);
                return;
            }
            _ => {}
        }
    }
}

/// Answers one request according to the lie.
async fn answer(
    connection: &quinn::Connection,
    lie: &Lie,
    chunk: u32,
    ordinal: usize,
    content: &Content,
    stats: &HostileStats,
) {
    let header = content.header(chunk);
    let data = content.chunk(chunk);
    match lie {
        Lie::ServeNothing => {}
        Lie::CorruptAfter(honest) if ordinal < *honest => {
            push(connection, header, data, stats).await;
        }
        Lie::CorruptBytes | Lie::CorruptAfter(_) => {
            let flipped: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
            push(connection, header, Bytes::from(flipped), stats).await;
        }
        Lie::WrongProof => {
            let mut proof = content.proofs[chunk as usize].clone();
            if let Some(first) = proof.first_mut() {
                first[0] ^= 1;
            }
            let mut frame = BytesMut::new();
            PieceHeader {
                chunk: ChunkIndex(chunk),
                from: 0,
                chunk_len: data.len() as u32,
                proof,
            }
            .encode(&mut frame)
            .expect("encode a header");
            push(connection, frame.freeze(), data, stats).await;
        }
        Lie::StallMidChunk => {
            let half = data.slice(..data.len() / 2);
            if let Ok(mut stream) = connection.open_uni().await {
                stats.streams_opened.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_chunk(header).await;
                let _ = stream.write_chunk(half).await;
                let _ = stream.stopped().await;
            }
        }
        Lie::Trickle => {
            if let Ok(mut stream) = connection.open_uni().await {
                stats.streams_opened.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_chunk(header).await;
                for piece in data.chunks(1024) {
                    if stream.write_all(piece).await.is_err() {
                        stats.streams_stopped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let _ = stream.finish();
            }
        }
        Lie::TooLong => {
            let mut long = data.to_vec();
            long.push(0);
            push(connection, header, Bytes::from(long), stats).await;
        }
        Lie::DuplicateStreams(copies) => {
            // Every header first, so all copies are announced while the
            // first is still arriving; then the bytes.
            let mut streams = Vec::new();
            for _ in 0..*copies {
                let Ok(mut stream) = connection.open_uni().await else {
                    return;
                };
                stats.streams_opened.fetch_add(1, Ordering::SeqCst);
                if stream.write_chunk(header.clone()).await.is_ok() {
                    streams.push(stream);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let finishes = streams
                .into_iter()
                .map(|stream| finish_push(stream, data.clone(), stats));
            futures_join_all(finishes).await;
        }
        Lie::PieceBytes(bytes) if ordinal == 0 => {
            push(
                connection,
                Bytes::new(),
                Bytes::copy_from_slice(bytes),
                stats,
            )
            .await;
        }
        _ => push(connection, header, data, stats).await,
    }
}

/// Opens a piece stream, writes `header` and `body`, finishes, and notes
/// whether the receiver stopped it.
pub async fn push(
    connection: &quinn::Connection,
    header: Bytes,
    body: Bytes,
    stats: &HostileStats,
) {
    let Ok(mut stream) = connection.open_uni().await else {
        return;
    };
    stats.streams_opened.fetch_add(1, Ordering::SeqCst);
    if !header.is_empty() && stream.write_chunk(header).await.is_err() {
        stats.streams_stopped.fetch_add(1, Ordering::SeqCst);
        return;
    }
    finish_push(stream, body, stats).await;
}

/// Writes the rest of a piece stream, finishes it, and notes whether the
/// receiver stopped it.
async fn finish_push(mut stream: quinn::SendStream, body: Bytes, stats: &HostileStats) {
    let written = stream.write_chunk(body).await;
    let _ = stream.finish();
    let outcome = match written {
        Err(quinn::WriteError::Stopped(_)) => Some(true),
        Err(_) => None,
        Ok(()) => match stream.stopped().await {
            Ok(Some(_)) => Some(true),
            Ok(None) => Some(false),
            Err(_) => None,
        },
    };
    match outcome {
        Some(true) => stats.streams_stopped.fetch_add(1, Ordering::SeqCst),
        Some(false) => stats.streams_completed.fetch_add(1, Ordering::SeqCst),
        None => stats.streams_lost.fetch_add(1, Ordering::SeqCst),
    };
}

/// Runs futures concurrently to the end (no extra dependency).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut handles = handles;
    std::future::poll_fn(|cx| {
        handles.retain_mut(|future| future.as_mut().poll(cx).is_pending());
        if handles.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}
