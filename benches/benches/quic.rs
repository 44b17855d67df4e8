//! Raw QUIC ceiling: bulk throughput between two endpoints on loopback.
//!
//! Each iteration moves 256 MiB from the listener to the dialer in 1 MiB
//! uni streams, 8 in flight (a new one starts when one has been read whole),
//! over one established connection, and the
//! receiver reads every stream to its end (discarding the bytes). Compared:
//! quinn's defaults and our tuned transport (`TransportTuning::default`),
//! plus the tuned transport with the other congestion controllers.
//! Reproduce with `cargo bench -p minimodel-benches --bench quic`; the
//! figures are in `docs/transport.md` and `docs/performance.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minimodel_swarm::transport::{
    CongestionControl, Identity, TransportTuning, accept, bind_endpoint, connect,
};
use minimodel_wire::PeerAddr;

const TOTAL: usize = 256 << 20;
const PIECE: usize = 1 << 20;
const IN_FLIGHT: usize = 8;

/// Two endpoints with one connection: `seeder` sends, `fetcher` receives.
struct Pair {
    seeder: quinn::Connection,
    fetcher: quinn::Connection,
    _endpoints: [quinn::Endpoint; 2],
}

async fn pair(tuning: &TransportTuning) -> Pair {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let seeder_identity = Identity::generate().expect("identity");
    let fetcher_identity = Identity::generate().expect("identity");
    let seeder_endpoint = bind_endpoint(listen, &seeder_identity, tuning).expect("bind");
    let fetcher_endpoint = bind_endpoint(listen, &fetcher_identity, tuning).expect("bind");
    let seeder_addr = PeerAddr {
        id: seeder_identity.peer_id(),
        addr: seeder_endpoint.local_addr().expect("local addr"),
    };
    let accepting = {
        let endpoint = seeder_endpoint.clone();
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = endpoint.accept().await.expect("incoming");
            accept(incoming, &seeder_identity, &tuning)
                .await
                .expect("accept")
        })
    };
    let fetcher = connect(&fetcher_endpoint, &seeder_addr, &fetcher_identity, tuning)
        .await
        .expect("connect");
    let (seeder, _) = accepting.await.expect("accept task");
    Pair {
        seeder,
        fetcher,
        _endpoints: [seeder_endpoint, fetcher_endpoint],
    }
}

/// Moves `TOTAL` bytes and returns how long it took.
async fn transfer(pair: &Pair, piece: &Bytes) -> Duration {
    let started = Instant::now();
    let fetcher = pair.fetcher.clone();
    let receiver = tokio::spawn(async move {
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..TOTAL / PIECE {
            let mut stream = fetcher.accept_uni().await.expect("accept_uni");
            readers.spawn(async move {
                let mut bytes = 0;
                while let Some(chunk) = stream.read_chunk(usize::MAX, true).await.expect("read") {
                    bytes += chunk.bytes.len();
                }
                bytes
            });
        }
        let mut received = 0;
        while let Some(bytes) = readers.join_next().await {
            received += bytes.expect("reader");
        }
        received
    });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..TOTAL / PIECE {
        let permit = semaphore.clone().acquire_owned().await.expect("permit");
        let seeder = pair.seeder.clone();
        let body = piece.clone();
        writers.spawn(async move {
            let mut stream = seeder.open_uni().await.expect("open_uni");
            stream.write_chunk(body).await.expect("write");
            stream.finish().expect("finish");
            // Like a request pipeline: the next piece starts once the
            // receiver has read this one whole (all of it acknowledged).
            let _ = stream.stopped().await;
            drop(permit);
        });
    }
    while writers.join_next().await.is_some() {}
    let received = receiver.await.expect("receiver");
    assert_eq!(received, TOTAL);
    started.elapsed()
}

fn quic(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let piece = Bytes::from(vec![0xa5u8; PIECE]);
    let with_cc = |congestion_control| TransportTuning {
        congestion_control,
        ..TransportTuning::default()
    };
    let cases = [
        ("quinn_defaults", TransportTuning::quinn_defaults()),
        ("tuned", TransportTuning::default()),
        ("tuned_cubic", with_cc(CongestionControl::Cubic)),
        ("tuned_bbr", with_cc(CongestionControl::Bbr)),
        ("tuned_newreno", with_cc(CongestionControl::NewReno)),
    ];
    let mut group = c.benchmark_group("quic_bulk_256MiB");
    group
        .throughput(Throughput::Bytes(TOTAL as u64))
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));
    for (name, tuning) in cases {
        let pair = runtime.block_on(pair(&tuning));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += transfer(&pair, &piece).await;
                    }
                    total
                })
            })
        });
        pair.fetcher.close(0u32.into(), b"done");
    }
    group.finish();
}

criterion_group!(benches, quic);
criterion_main!(benches);
