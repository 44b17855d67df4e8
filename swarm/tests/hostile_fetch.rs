//! A fetcher against peers that lie, through real QUIC on loopback: a
//! hostile peer costs time, never correctness. For each lie the honest
//! download completes from the honest seeder and verifies; the liar is
//! banned (bad data, named in the receipt) or dropped (broken protocol,
//! stalls); no byte that failed its proof reaches the `.part` file or
//! another peer.

mod common;

use common::Artifact;
use common::hostile::{HostileSeeder, HostileStats, Lie};
use common::nodes::{
    RunningSeeder, fetch, fetch_and_verify, fetch_plan, listen_config, open_partial,
};
use minimodel_swarm::fetch::FetchError;
use minimodel_swarm::node::{NodeFailure, NodeSettings};
use minimodel_wire::GoodbyeReason;

/// 2 MiB in 32 KiB chunks: 64 chunks.
const SIZE: u64 = 2 << 20;
const CHUNK: u32 = 32 << 10;

fn artifact(dir: &std::path::Path, name: &str) -> Artifact {
    common::artifact(dir, name, SIZE, CHUNK)
}

/// An honest seeder slow enough (a 1 MiB burst, then 1 MiB/s: about a
/// second and a half for the artifact) that a hostile peer dialed at the
/// same time is surely asked for chunks.
fn slow_seeder(artifact: &Artifact) -> RunningSeeder {
    seeder_at(artifact, 1 << 20)
}

/// An honest seeder capped at `rate` bytes a second (after a 1 MiB burst).
fn seeder_at(artifact: &Artifact, rate: u64) -> RunningSeeder {
    RunningSeeder::start(
        artifact,
        NodeSettings {
            core: minimodel_swarm::node::CoreConfig {
                max_upload: Some(rate),
                ..minimodel_swarm::node::CoreConfig::default()
            },
            ..listen_config()
        },
    )
}

/// Fetches from an honest seeder and a hostile peer lying with `lie`;
/// checks the result; returns the run and the liar's counters.
async fn fetch_past(lie: Lie) -> (common::nodes::FetchRun, HostileSeeder) {
    fetch_past_seeder_at(lie, 1 << 20).await
}

/// [`fetch_past`] with the honest seeder capped at `rate`.
async fn fetch_past_seeder_at(lie: Lie, rate: u64) -> (common::nodes::FetchRun, HostileSeeder) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "hostile");
    let seeder = seeder_at(&artifact, rate);
    let hostile = HostileSeeder::start(&artifact, lie);
    let out = dir.path().join("out");
    let run = fetch_and_verify(&artifact, &out, vec![hostile.peer, seeder.peer], |_| {}).await;
    assert!(
        !out.join("hostile.slm.part").exists(),
        "the part file became the artifact"
    );
    (run, hostile)
}

/// Fetches from the hostile peer alone: the fetch must fail (nobody left
/// to ask) rather than hang or deliver.
async fn fetch_only_from(lie: Lie) -> (common::nodes::FetchRun, HostileSeeder) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "alone");
    let hostile = HostileSeeder::start(&artifact, lie);
    let out = dir.path().join("out");
    let mut plan = fetch_plan(&artifact, &out, vec![hostile.peer]);
    // Alone with a liar: it is dialed again (it might be restarted) until
    // the fetch gives up.
    plan.core.give_up_after = std::time::Duration::from_secs(5);
    let run = fetch(plan, open_partial(&artifact, &out)).await;
    match &run.result {
        Err(FetchError::Failed(NodeFailure::NoPeers { missing, .. })) => assert!(*missing > 0),
        Err(other) => panic!("expected NoPeers, got {other}"),
        Ok(_) => panic!("a download from a liar alone cannot complete"),
    }
    (run, hostile)
}

fn requests(hostile: &HostileSeeder) -> usize {
    HostileStats::get(&hostile.stats.requests)
}

/// A liar that sends bad chunk data is banned, told why, and named in the
/// receipt with its bad chunks; none of its chunks count.
async fn banned_for_bad_data(lie: Lie) {
    let (run, hostile) = fetch_past(lie.clone()).await;
    assert!(requests(&hostile) > 0, "{lie:?}: the liar was asked");
    assert!(run.banned(&hostile.peer), "{lie:?}: {:#?}", run.reports);
    let summary = run.summary();
    let named = summary
        .peers
        .iter()
        .find(|p| p.peer_id == hostile.peer.id.to_string())
        .unwrap_or_else(|| panic!("{lie:?}: the receipt names the liar: {summary:?}"));
    assert!(named.banned, "{lie:?}: {named:?}");
    assert!(named.bad_chunks >= 1, "{lie:?}: {named:?}");
    assert_eq!(named.chunks, 0, "{lie:?}: none of its chunks counted");
    let goodbyes = hostile.stats.goodbyes.lock().unwrap().clone();
    assert_eq!(goodbyes, vec![GoodbyeReason::BadData], "{lie:?}: told why");
    assert_eq!(summary.chunks_fetched, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunk_bytes_get_the_peer_banned_and_named_in_the_receipt() {
    banned_for_bad_data(Lie::CorruptBytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proofs_get_the_peer_banned_and_named_in_the_receipt() {
    banned_for_bad_data(Lie::WrongProof).await;
}

/// A liar that breaks the protocol is dropped (not banned: it sent no
/// bad chunk) with Goodbye(ProtocolViolation), for `reason`.
async fn dropped_for(lie: Lie, reason: &str) {
    let (run, hostile) = fetch_past(lie.clone()).await;
    let disconnects = run.disconnects(&hostile.peer);
    assert!(
        disconnects.iter().any(|d| d.contains(reason)),
        "{lie:?}: dropped for {reason:?}: {disconnects:?}"
    );
    assert!(!run.banned(&hostile.peer), "{lie:?}: no bad data, no ban");
    let goodbyes = hostile.stats.goodbyes.lock().unwrap().clone();
    assert_eq!(
        goodbyes,
        vec![GoodbyeReason::ProtocolViolation],
        "{lie:?}: told why"
    );
}

const FOUR_GIB_PREFIX: [u8; 9] = [0xff, 0xff, 0xff, 0xff, 0x05, 0, 0, 0, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_chunk_gets_the_peer_dropped() {
    dropped_for(Lie::Unrequested, "never requested").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_longer_than_its_length_gets_the_peer_dropped() {
    dropped_for(Lie::TooLong, "carries more than its").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_control_frame_prefix_gets_the_peer_dropped() {
    dropped_for(
        Lie::ControlBytes(FOUR_GIB_PREFIX.to_vec().into()),
        "exceeds",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_frame_over_its_cap_gets_the_peer_dropped() {
    let mut frame = 65537u32.to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(0x09, 70_000));
    dropped_for(Lie::ControlBytes(frame.into()), "exceeds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_frame_type_gets_the_peer_dropped() {
    dropped_for(
        Lie::ControlBytes(vec![1, 0, 0, 0, 0x7f].into()),
        "unknown frame type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_piece_header_prefix_gets_the_peer_dropped() {
    dropped_for(
        Lie::PieceBytes(FOUR_GIB_PREFIX.to_vec().into()),
        "exceeds this stream's limit of 2048 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_header_over_its_cap_gets_the_peer_dropped() {
    dropped_for(
        Lie::PieceBytes(2049u32.to_le_bytes().to_vec().into()),
        "exceeds this stream's limit of 2048 bytes",
    )
    .await;
}

/// A liar refused during the handshake never joins the download.
async fn refused_in_handshake(lie: Lie, reason: &str) {
    let (run, hostile) = fetch_past(lie.clone()).await;
    let refusals = run.refusals(&hostile.peer);
    assert!(
        refusals.iter().any(|r| r.contains(reason)),
        "{lie:?}: {refusals:?}"
    );
    assert!(run.summary().peers.len() == 1, "{lie:?}: only the seeder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitfield_for_another_chunk_count_is_refused() {
    refused_in_handshake(Lie::BitfieldChunkCount, "bitfield covers 72 chunks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitfield_of_the_wrong_byte_length_is_refused() {
    refused_in_handshake(Lie::BitfieldMalformed, "has 9").await;
}

/// A staller costs time: next to an honest seeder it delivers nothing and
/// the download completes; alone, it is dropped by the stall or request
/// timeouts and the fetch fails instead of hanging.
async fn stalling_costs_time_not_correctness(lie: Lie) {
    let (run, hostile) = fetch_past(lie.clone()).await;
    assert!(requests(&hostile) > 0, "{lie:?}: the staller was asked");
    let named = run
        .summary()
        .peers
        .iter()
        .find(|p| p.peer_id == hostile.peer.id.to_string())
        .map(|p| p.chunks)
        .unwrap_or(0);
    assert_eq!(named, 0, "{lie:?}: the staller delivered nothing");
    let (run, hostile) = fetch_only_from(lie.clone()).await;
    let disconnects = run.disconnects(&hostile.peer);
    assert!(
        disconnects
            .iter()
            .any(|r| r.contains("delivered nothing") || r.contains("timed out")),
        "{lie:?}: {disconnects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_claims_every_chunk_and_serves_none_costs_time_only() {
    stalling_costs_time_not_correctness(Lie::ServeNothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_mid_chunk_costs_time_only() {
    stalling_costs_time_not_correctness(Lie::StallMidChunk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_trickles_bytes_costs_time_only() {
    stalling_costs_time_not_correctness(Lie::Trickle).await;
}

/// A peer that breaks off or lies in the handshake: alone, the fetch fails
/// naming it; next to an honest seeder, it is harmless.
async fn breaking_off_is_harmless(lie: Lie, reason: &str) {
    let (run, hostile) = fetch_only_from(lie.clone()).await;
    let refusals = run.refusals(&hostile.peer);
    let disconnects = run.disconnects(&hostile.peer);
    assert!(
        refusals
            .iter()
            .chain(&disconnects)
            .any(|r| r.contains(reason)),
        "{lie:?}: {refusals:?} {disconnects:?}"
    );
    if matches!(lie, Lie::WrongModelId | Lie::WrongRoot) {
        let goodbyes = hostile.stats.goodbyes.lock().unwrap().clone();
        assert_eq!(goodbyes, vec![GoodbyeReason::WrongSwarm], "{lie:?}");
    }
    fetch_past(lie).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_before_the_control_stream_is_harmless() {
    breaking_off_is_harmless(Lie::CloseBeforeControlStream, "closed the connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_after_our_hello_is_harmless() {
    breaking_off_is_harmless(Lie::CloseAfterPeerHello, "closed the connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_after_its_hello_is_harmless() {
    breaking_off_is_harmless(Lie::CloseAfterOwnHello, "closed the connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_after_its_hello_times_out() {
    breaking_off_is_harmless(Lie::StallAfterOwnHello, "no answer in time").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_after_the_bitfields_is_harmless() {
    breaking_off_is_harmless(Lie::CloseAfterBitfield, "closed the connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_for_another_model_id_is_refused() {
    breaking_off_is_harmless(Lie::WrongModelId, "is in another swarm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_for_another_merkle_root_is_refused() {
    breaking_off_is_harmless(Lie::WrongRoot, "is in another swarm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_for_one_chunk_are_refused_but_one() {
    let copies = 40;
    // The liar holds each chunk's bytes back 200 ms after its headers. An
    // honest seeder that would finish alone in about a second could end
    // the fetch inside that wait when a loaded machine brings the liar's
    // link up late, and every copy would then see the connection close
    // instead of being stopped: at 256 KiB/s (about 4 s alone) the fetch
    // still needs the liar long after its first answer.
    let (run, hostile) = fetch_past_seeder_at(Lie::DuplicateStreams(copies), 256 << 10).await;
    let asked = requests(&hostile);
    assert!(asked > 0);
    // Its answers end once every copy was stopped, read or cut off by the
    // connection's end: count them then.
    common::eventually("the liar's answers to end", || {
        HostileStats::get(&hostile.stats.answers_done) >= asked
    })
    .await;
    let stopped = HostileStats::get(&hostile.stats.streams_stopped);
    let completed = HostileStats::get(&hostile.stats.streams_completed);
    let lost = HostileStats::get(&hostile.stats.streams_lost);
    assert!(
        stopped >= copies - 1,
        "the copies of a chunk already arriving are stopped: {stopped} stopped, {completed} \
         completed, {lost} cut by the connection's end, for {asked} requests; closes {:?}",
        hostile.stats.closes.lock().unwrap()
    );
    assert!(
        completed <= asked,
        "at most one stream per request is read: {completed} streams for {asked} requests"
    );
    assert!(!run.banned(&hostile.peer), "its chunks are good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetcher_keeps_to_its_peer_limit() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "limit");
    let seeders: Vec<RunningSeeder> = (0..3).map(|_| slow_seeder(&artifact)).collect();
    let out = dir.path().join("out");
    let run = fetch_and_verify(
        &artifact,
        &out,
        seeders.iter().map(|s| s.peer).collect(),
        |plan| plan.core.max_peers = 1,
    )
    .await;
    assert_eq!(run.summary().peers.len(), 1, "{:?}", run.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unverified_byte_reaches_the_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "partial");
    let original = std::fs::read(&artifact.path).unwrap();
    // Eight good chunks, then flipped bytes: the liar is banned, the
    // download stops for want of peers, the part stays.
    let hostile = HostileSeeder::start(&artifact, Lie::CorruptAfter(8));
    let out = dir.path().join("out");
    let run = fetch(
        fetch_plan(&artifact, &out, vec![hostile.peer]),
        open_partial(&artifact, &out),
    )
    .await;
    assert!(matches!(
        run.result,
        Err(FetchError::Failed(NodeFailure::NoPeers { .. }))
    ));
    assert!(run.banned(&hostile.peer), "{:#?}", run.reports);
    let mut part = std::fs::read(out.join("partial.slm.part")).unwrap();
    part.resize(original.len(), 0);
    let mut written = 0;
    for (index, (got, want)) in part
        .chunks(CHUNK as usize)
        .zip(original.chunks(CHUNK as usize))
        .enumerate()
    {
        if got.iter().all(|&b| b == 0) {
            continue;
        }
        assert_eq!(
            got, want,
            "chunk {index} of the part file is not the artifact's"
        );
        written += 1;
    }
    let partial = open_partial(&artifact, &out);
    let verified = partial.chunks_verified();
    assert!(verified <= 8, "only the honest chunks count: {verified}");
    assert!(written >= verified as usize);
    drop(partial);
    // Resumed next to an honest seeder: what was verified is kept.
    let seeder = slow_seeder(&artifact);
    let mut plan = fetch_plan(&artifact, &out, vec![hostile.peer, seeder.peer]);
    plan.core.give_up_after = std::time::Duration::from_secs(10);
    let run = fetch(plan, open_partial(&artifact, &out)).await;
    assert_eq!(run.summary().chunks_resumed, u64::from(verified));
    let fetched = std::fs::read(&run.outcome().artifact_path).unwrap();
    assert!(fetched == original, "the resumed download is the artifact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_fetcher_passes_on_only_verified_chunks() {
    use std::sync::Arc;

    use minimodel_swarm::fetch::{Fetcher, Serving};
    use minimodel_swarm::transport::Identity;

    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "relay");
    let seeder = slow_seeder(&artifact);
    let hostile = HostileSeeder::start(&artifact, Lie::CorruptBytes);
    // A downloads from the liar and the seeder and serves what it has.
    let middle_out = dir.path().join("middle");
    let mut plan = fetch_plan(&artifact, &middle_out, vec![hostile.peer, seeder.peer]);
    plan.serving = Some(Serving {
        listen: "127.0.0.1:0".parse().unwrap(),
        seed_after: true,
        port_mapping: false,
    });
    let (reports, mut middle_reports) = tokio::sync::mpsc::unbounded_channel();
    let middle = Fetcher::start(
        plan,
        open_partial(&artifact, &middle_out),
        Arc::new(Identity::generate().unwrap()),
        reports,
    )
    .unwrap();
    let middle_peer = minimodel_wire::PeerAddr {
        id: middle.peer_id(),
        addr: middle.listen_addr().unwrap(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let middle = tokio::spawn(middle.run(async move {
        let _ = stopped.await;
    }));
    // B downloads from A alone, and verifies every chunk itself.
    let last = fetch_and_verify(
        &artifact,
        &dir.path().join("last"),
        vec![middle_peer],
        |_| {},
    )
    .await;
    // B may learn of the others through peer exchange; what matters is
    // what came from A.
    let from_middle = last
        .summary()
        .peers
        .iter()
        .find(|peer| peer.peer_id == middle_peer.id.to_string())
        .expect("B downloaded from A");
    assert!(from_middle.chunks > 0, "B downloaded from A");
    assert_eq!(from_middle.bad_chunks, 0, "A served no unverified chunk");
    assert!(!from_middle.banned);
    // B may finish first with help from peers it learned of; A is stopped
    // once it has delivered its own copy.
    let mut banned = false;
    let wait_for_a = async {
        while let Some(report) = middle_reports.recv().await {
            use minimodel_swarm::node::NodeReport;
            match report {
                NodeReport::Banned { peer, .. } if peer == hostile.peer.id => banned = true,
                NodeReport::Delivered { .. } => return true,
                _ => {}
            }
        }
        false
    };
    let delivered = tokio::time::timeout(common::HANG, wait_for_a)
        .await
        .unwrap_or(false);
    assert!(delivered, "A delivered its copy");
    let _ = stop.send(());
    let middle = middle.await.unwrap();
    assert!(HostileStats::get(&hostile.stats.requests) > 0);
    assert!(banned, "A banned the liar");
    assert!(middle.is_ok(), "A completed too: {middle:?}");
}

/// What a fetch next to a peer flooding it with Peers messages saw.
struct Flooded {
    /// Peers messages the liar sent.
    messages: usize,
    /// Distinct dials that reached the advertised socket.
    dials: usize,
    /// How long the fetch ran at most (measured around it).
    ran: std::time::Duration,
    /// Messages and dials when `enough` held.
    at_end: (usize, usize),
}

/// Runs a fetch next to a peer that sends a Peers message of `entries`
/// fresh ids every `every`, all at one socket that never answers, until
/// `enough(messages, dials)` holds.
async fn peer_exchange_dials(
    every: std::time::Duration,
    entries: usize,
    enough: impl Fn(usize, usize) -> bool,
) -> Flooded {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use common::nodes::fetch_until;

    let dir = tempfile::tempdir().unwrap();
    let artifact = artifact(dir.path(), "pex");
    // Every advertised peer is this socket, which never answers: each
    // dial is one QUIC connection attempt with its own destination id.
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let attempts = Arc::new(Mutex::new(BTreeSet::<Vec<u8>>::new()));
    let seen = Arc::clone(&attempts);
    let sink_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, _)) = sink.recv_from(&mut buf).await {
            // A long-header Initial: 1100xxxx, version, dcid length, dcid.
            let datagram = &buf[..len];
            if len > 6 && datagram[0] & 0xf0 == 0xc0 {
                let dcid_len = datagram[5] as usize;
                if let Some(dcid) = datagram.get(6..6 + dcid_len) {
                    seen.lock().unwrap().insert(dcid.to_vec());
                }
            }
        }
    });
    let hostile = HostileSeeder::start(
        &artifact,
        Lie::PeersFlood {
            to: sink_addr,
            every,
            entries,
        },
    );
    let out = dir.path().join("out");
    let mut plan = fetch_plan(&artifact, &out, vec![hostile.peer]);
    plan.tuning.handshake_timeout = Duration::from_millis(300);
    let stats = Arc::clone(&hostile.stats);
    let counted = Arc::clone(&attempts);
    let at_end = Arc::new(Mutex::new((0, 0)));
    let noted = Arc::clone(&at_end);
    let started = std::time::Instant::now();
    let run = fetch_until(plan, open_partial(&artifact, &out), async move {
        common::eventually("the flood to reach its end", || {
            let now = (
                HostileStats::get(&stats.peers_messages),
                counted.lock().unwrap().len(),
            );
            *noted.lock().unwrap() = now;
            enough(now.0, now.1)
        })
        .await;
    })
    .await;
    let ran = started.elapsed();
    sink_task.abort();
    assert!(matches!(run.result, Err(FetchError::Interrupted)));
    let messages = HostileStats::get(&hostile.stats.peers_messages);
    let dials = attempts.lock().unwrap().len();
    let at_end = *at_end.lock().unwrap();
    Flooded {
        messages,
        dials,
        ran,
        at_end,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_exchange_floods_are_rate_limited() {
    use std::time::Duration;
    let flooded = peer_exchange_dials(
        Duration::from_millis(20),
        minimodel_wire::MAX_PEERS_PER_MESSAGE,
        |messages, _| messages >= 100,
    )
    .await;
    let Flooded {
        messages,
        dials,
        ran,
        ..
    } = flooded;
    assert!(dials > 0, "the first message is acted on");
    // 32 at once and 32 every 2 s after that (`peer_exchange_min_interval`)
    // however long the run took: the bound grows with the time measured
    // around the fetch, so a slow machine does not break it, while the
    // flood offered `MAX_PEERS_PER_MESSAGE` fresh peers in every message.
    let allowed = 32 + 32 * (ran.as_secs() as usize / 2 + 1);
    assert!(
        dials <= allowed,
        "{dials} dials from {messages} messages in {ran:?} (at most {allowed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_announced_one_at_a_time_are_all_dialed() {
    use std::time::Duration;
    // An honest node tells of each new serving peer as it connects, a
    // quarter second apart at most: none of them is dropped by the limit.
    // The run ends once six were told of and every one told of so far
    // was dialed (a dial follows its message at once, long before the
    // next message); one left out never lets it end.
    let flooded = peer_exchange_dials(Duration::from_millis(250), 1, |messages, dials| {
        messages >= 6 && dials >= messages
    })
    .await;
    let (messages, dials) = flooded.at_end;
    assert!(
        messages >= 6 && dials >= messages,
        "{dials} dials from {messages} messages of one peer each"
    );
}

/// A peer that answers every manifest query with `answer` (whatever was
/// asked), then closes: a liar about a ticket's manifest.
fn lying_manifest_server(answer: Vec<u8>) -> minimodel_wire::PeerAddr {
    use minimodel_swarm::transport::{self, Identity, TransportTuning};
    let identity = std::sync::Arc::new(Identity::generate().expect("a key"));
    let tuning = TransportTuning::default();
    let endpoint = common::hostile::endpoint_on([127, 0, 0, 1].into(), &identity, &tuning);
    let peer = minimodel_wire::PeerAddr {
        id: identity.peer_id(),
        addr: endpoint.local_addr().expect("bound"),
    };
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok((connection, _)) = transport::accept(incoming, &identity, &tuning).await else {
                continue;
            };
            let Ok((mut send, recv)) = connection.accept_bi().await else {
                continue;
            };
            let mut reader = common::hostile::ControlReader::new(recv);
            let asked = reader.recv(std::time::Duration::from_secs(5)).await;
            assert!(
                matches!(
                    asked,
                    Ok(Some(minimodel_wire::Message::ManifestRequest { .. }))
                ),
                "{asked:?}"
            );
            let mut frame = bytes::BytesMut::new();
            minimodel_wire::Message::Manifest {
                bytes: answer.clone(),
            }
            .encode(&mut frame)
            .expect("a manifest under its cap");
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
            let _ = send.stopped().await;
        }
    });
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_answers_a_ticket_with_other_bytes_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), "ticketed", 1 << 20, 256 << 10);
    let text = artifact.manifest.to_text().into_bytes();
    let digest = minimodel_verifier::Sha256Digest::of(&text);
    // The liar sends a manifest (this one, changed by one byte) for it.
    let mut forged = text.clone();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    let liar = lying_manifest_server(forged);
    // An honest seeder of the real one.
    let honest = common::nodes::RunningSeeder::start(&artifact, common::nodes::listen_config());
    let peers = |list: &[&minimodel_wire::PeerAddr]| {
        list.iter()
            .map(|peer| minimodel_swarm::peers::PeerAddrs {
                id: peer.id,
                addrs: vec![peer.addr],
            })
            .collect::<Vec<_>>()
    };
    let identity = minimodel_swarm::transport::Identity::generate().unwrap();
    let tuning = minimodel_swarm::transport::TransportTuning::default();
    let wait = std::time::Duration::from_secs(10);
    let only_liar = minimodel_swarm::ticket::Ticket::new(digest, None, peers(&[&liar])).unwrap();
    let error = minimodel_swarm::app::ticket::manifest_of(&only_liar, &identity, &tuning, wait)
        .await
        .expect_err("the liar's bytes do not have the ticket's digest");
    assert!(error.wrong_bytes, "{error}");
    assert_eq!(error.tried.len(), 1);
    // With an honest peer after it, the honest bytes are the answer.
    let both =
        minimodel_swarm::ticket::Ticket::new(digest, None, peers(&[&liar, &honest.peer])).unwrap();
    let got = minimodel_swarm::app::ticket::manifest_of(&both, &identity, &tuning, wait)
        .await
        .expect("the honest peer answers");
    assert_eq!(&got.bytes[..], &text[..]);
    assert_eq!(
        got.from,
        minimodel_swarm::app::ticket::ManifestSource::Peer(honest.peer)
    );
}
