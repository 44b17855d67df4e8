//! A seeder of this build serves a RequestFrom (wire protocol v3): a peer
//! that holds the start of a chunk asks for the rest, gets a PieceFrom with
//! the chunk's bytes from that offset on and the whole chunk's proof, and
//! the start it holds and the rest it got check against the Merkle root.

mod common;

use bytes::Bytes;
use common::nodes::{RunningSeeder, listen_config};
use minimodel_swarm::link::{handshake, pieces};
use minimodel_swarm::transport::{self, Identity, TransportTuning};
use minimodel_verifier::chunk::ChunkData;
use minimodel_verifier::merkle::verify_proof;
use minimodel_wire::{ChunkIndex, HaveBitfield, Message, SwarmIdentity, SwarmParams};

/// 1 MiB in 64 KiB chunks, the last one short.
const SIZE: u64 = (1 << 20) - 1000;
const CHUNK: u32 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeder_sends_a_chunk_from_the_offset_asked_and_the_whole_checks() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), "tail", SIZE, CHUNK);
    let bytes = std::fs::read(&artifact.path).unwrap();
    let seeder = RunningSeeder::start(&artifact, listen_config());
    let chunks = &artifact.manifest.chunks;
    let count = u32::try_from(chunks.chunk_count).unwrap();
    let params = SwarmParams::new(SIZE, CHUNK, count).unwrap();
    let swarm = SwarmIdentity::new(
        artifact.manifest.model_id.as_str(),
        chunks.merkle_root.0,
        params.clone(),
    )
    .unwrap();

    let identity = Identity::generate().unwrap();
    let tuning = TransportTuning::default();
    let endpoint = transport::bind_client_endpoint(&tuning).unwrap();
    let connection = transport::connect(&endpoint, &seeder.peer, &identity, &tuning)
        .await
        .unwrap();
    assert_eq!(transport::protocol_version(&connection), 3);
    let hello = swarm.hello(false, None, "test/1").unwrap();
    let empty = HaveBitfield::new(count);
    let Ok(mut session) =
        handshake::dial(connection.clone(), seeder.peer.id, &swarm, hello, empty).await
    else {
        panic!("the seeder refused the session");
    };
    assert_eq!(session.hello.protocol_version, 3);

    // The last chunk (short) from byte 5000, and chunk 3 from its last byte.
    let last = count - 1;
    for (chunk, from) in [(last, 5_000u32), (3, CHUNK - 1)] {
        let request = Message::RequestFrom {
            chunk: ChunkIndex(chunk),
            from,
        };
        session.control.check_send(&request).unwrap();
        session
            .send
            .write_all(&request.to_frame().unwrap())
            .await
            .unwrap();
        let mut stream =
            tokio::time::timeout(std::time::Duration::from_secs(30), connection.accept_uni())
                .await
                .expect("a piece stream in time")
                .unwrap();
        let header = pieces::receive_header(&mut stream, &params, 3)
            .await
            .unwrap();
        assert_eq!(header.header().chunk, ChunkIndex(chunk));
        assert_eq!(header.header().from, from);
        let piece = pieces::receive_body(&mut stream, header, |_| {})
            .await
            .unwrap();
        let start = u64::from(chunk) * u64::from(CHUNK);
        let len = params.chunk_len(ChunkIndex(chunk)).unwrap() as u64;
        let tail = &bytes[(start + u64::from(from)) as usize..(start + len) as usize];
        assert_eq!(
            &piece.data.to_contiguous()[..],
            tail,
            "chunk {chunk} from {from}"
        );
        // The start we hold and the rest we got make the chunk the root
        // names.
        let mut whole = ChunkData::new();
        whole.push(Bytes::copy_from_slice(
            &bytes[start as usize..(start + u64::from(from)) as usize],
        ));
        for part in piece.data.parts() {
            whole.push(part.clone());
        }
        verify_proof(
            &chunks.merkle_root,
            count,
            chunk,
            &whole.sha256(),
            &piece.proof,
        )
        .unwrap();
    }
}
