//! Memory stays bounded under attack. Each attack runs right after a
//! harmless run of the same shape (the same peers, endpoints and
//! connections, without the attack), and the process's peak resident set
//! (VmHWM) may grow by only a few MiB past the peak of that harmless run,
//! although each attack would cost tens or hundreds of MiB if what the
//! attacker sends were buffered. (Each QUIC endpoint costs several MiB of
//! receive buffers by itself, which is why every attack gets its own
//! baseline.) One test in its own binary, so nothing else moves the peak.

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::Artifact;
use common::hostile::{DialOutcome, Dialer, HostileSeeder, Lie, RawSession, swarm};
use common::nodes::{RunningSeeder, fetch_and_verify, listen_config, vm_kib};
use minimodel_swarm::node::NodeSettings;
use minimodel_swarm::transport::{Identity, TransportTuning};
use minimodel_wire::{ChunkIndex, HaveBitfield, Message};

/// 8 MiB in 256 KiB chunks: 32 chunks.
const SIZE: u64 = 8 << 20;
const CHUNK: u32 = 256 << 10;

/// Copies of each chunk the duplicating peer sends.
const COPIES: usize = 64;

/// Peak growth allowed over the harmless run of the same shape. Running
/// the same scenario twice moves the peak by up to about 20 MiB (how many
/// chunks happen to be in flight at once; the QUIC state of thousands of
/// short streams); reading every copy of a duplicated chunk cost 50 to 65
/// MiB more.
const HEADROOM_KIB: u64 = 40 << 10;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `harmless`, then `attack`, and checks the peak.
async fn bounded<H, A>(name: &str, harmless: H, attack: A)
where
    H: std::future::Future<Output = ()>,
    A: std::future::Future<Output = ()>,
{
    harmless.await;
    let baseline = vm_kib("VmHWM");
    attack.await;
    let peak = vm_kib("VmHWM");
    eprintln!(
        "{name}: VmHWM {:.1} MiB after the harmless run, {:.1} MiB after the attack",
        mib(baseline),
        mib(peak)
    );
    assert!(
        peak <= baseline + HEADROOM_KIB,
        "{name}: the peak grew from {:.1} to {:.1} MiB",
        mib(baseline),
        mib(peak)
    );
}

/// A fetch from the seeder and a peer lying with `lie`; checks that the
/// liar was asked for chunks when it claims to have them.
async fn fetch_past(artifact: &Artifact, seeder: &RunningSeeder, lie: Lie, out: &str) {
    let asked = matches!(lie, Lie::Honest | Lie::DuplicateStreams(_));
    let liar = HostileSeeder::start(artifact, lie);
    let dir = artifact.path.parent().unwrap().join(out);
    fetch_and_verify(artifact, &dir, vec![liar.peer, seeder.peer], |_| {}).await;
    if asked {
        assert!(liar.stats.requests.load(Ordering::SeqCst) > 0, "{out}");
    }
}

/// Sixteen peers from four networks (a /24 each) connect to the seeder; with
/// `attack`, each floods requests (and reads none of the pieces), pushes 4
/// MiB on a piece stream and 4 MiB on a second control stream. Then an
/// honest fetch.
async fn crowd(artifact: &Artifact, seeder: &RunningSeeder, attack: bool, out: &str) {
    let ours = swarm(artifact);
    let count = ours.params().chunk_count();
    let mut flood = Vec::new();
    for round in 0..512u32 {
        Message::Request {
            chunk: ChunkIndex(round % count),
        }
        .encode(&mut flood)
        .unwrap();
    }
    // One shared buffer: the attackers' own memory stays out of the peak.
    let body = Bytes::from(vec![0u8; 4 << 20]);
    let mut sessions: Vec<RawSession> = Vec::new();
    let mut dialers = Vec::new();
    let mut pushes = Vec::new();
    for last in 2..6u8 {
        // Tight receive windows: what the seeder uploads to the crowd
        // stays in the seeder's hands, not in the crowd's buffers.
        let tight = TransportTuning {
            stream_receive_window: 4096,
            connection_receive_window: 4096,
            ..TransportTuning::default()
        };
        let dialer = Dialer::with_tuning([127, 0, last, 1].into(), tight);
        for _ in 0..4 {
            let identity = Identity::generate().unwrap();
            let mut session = dialer.session_as(&identity, &seeder.peer).await.unwrap();
            let hello = ours.hello(false, None, "crowd/0").unwrap();
            let outcome = session.handshake(hello, HaveBitfield::new(count)).await;
            assert!(matches!(outcome, DialOutcome::Established { .. }));
            if attack {
                let _ = session.send_raw(&flood).await;
                let connection = session.connection.clone();
                let body = body.clone();
                pushes.push(tokio::spawn(async move {
                    if let Ok(mut stream) = connection.open_uni().await {
                        let _ = stream.write_chunk(body.clone()).await;
                    }
                    if let Ok((mut send, _recv)) = connection.open_bi().await {
                        let _ = send.write_chunk(body).await;
                    }
                }));
            }
            sessions.push(session);
        }
        dialers.push(dialer);
    }
    let dir = artifact.path.parent().unwrap().join(out);
    fetch_and_verify(artifact, &dir, vec![seeder.peer], |_| {}).await;
    // Every push went out, or ended with the connection the seeder closed
    // on it: the floods have landed.
    for push in pushes {
        tokio::time::timeout(common::HANG, push)
            .await
            .expect("the pushes end")
            .unwrap();
    }
    assert!(seeder.is_running());
    for session in &sessions {
        session.connection.close(0u32.into(), b"done");
    }
    for dialer in &dialers {
        dialer.endpoint.wait_idle().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = common::artifact(dir.path(), "memory", SIZE, CHUNK);
    let seeder = RunningSeeder::start(
        &artifact,
        NodeSettings {
            // A 1 MiB burst, then 8 MiB/s: about a second per download,
            // so the liar dialed with it is surely asked.
            core: minimodel_swarm::node::CoreConfig {
                max_upload: Some(8 << 20),
                max_links_per_prefix: 4,
                ..minimodel_swarm::node::CoreConfig::default()
            },
            ..listen_config()
        },
    );
    // A warm-up, so allocations that happen once are behind us.
    fetch_past(&artifact, &seeder, Lie::Honest, "warm").await;

    // A peer answering each request with 64 copies of the chunk, all
    // headers first: 16 MiB a request if every copy were read. Harmless
    // run: the same peer sending one copy.
    bounded(
        "64 copies of each chunk",
        fetch_past(&artifact, &seeder, Lie::DuplicateStreams(1), "one-copy"),
        fetch_past(&artifact, &seeder, Lie::DuplicateStreams(COPIES), "copies"),
    )
    .await;

    // A 4 GiB frame announced on the control stream, then 4 MiB of junk.
    let mut junk = vec![0xff, 0xff, 0xff, 0xff];
    junk.extend(std::iter::repeat_n(0x5a, 4 << 20));
    bounded(
        "a 4 GiB control frame",
        fetch_past(&artifact, &seeder, Lie::ServeNothing, "idle"),
        fetch_past(&artifact, &seeder, Lie::ControlBytes(junk.into()), "junk"),
    )
    .await;

    // Sixteen peers flooding a seeder with requests, pushed streams and
    // spare control streams: 128 MiB offered.
    bounded(
        "a crowd flooding the seeder",
        crowd(&artifact, &seeder, false, "calm"),
        crowd(&artifact, &seeder, true, "flooded"),
    )
    .await;
}
