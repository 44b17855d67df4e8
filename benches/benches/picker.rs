//! The piece picker and the have-bitfield it reads: a peer joining with its
//! bitfield, a pick for it and the pick handed back, and the bitfield's own
//! walks, at 4,096 chunks (a 4 GiB artifact in 1 MiB chunks).
//!
//! `cargo bench -p minimodel-benches --bench picker`

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use minimodel_node::LinkId;
use minimodel_node::picker::PiecePicker;
use minimodel_node::rng::SplitMix64;
use minimodel_wire::{ChunkIndex, HaveBitfield};

const CHUNKS: u32 = 4096;

/// A bitfield with each chunk set with probability `percent` / 100.
fn some(rng: &mut SplitMix64, percent: u64) -> HaveBitfield {
    let mut bits = HaveBitfield::new(CHUNKS);
    for chunk in 0..CHUNKS {
        if rng.below(100) < percent {
            bits.set(ChunkIndex(chunk), true).unwrap();
        }
    }
    bits
}

fn picker(c: &mut Criterion) {
    let mut rng = SplitMix64(7);
    let half = some(&mut rng, 50);
    let sparse = some(&mut rng, 5);
    let mut group = c.benchmark_group("picker_4096");
    group.bench_function("peer_joins_and_leaves_half", |b| {
        let mut picker = PiecePicker::new(CHUNKS, 1);
        b.iter(|| {
            picker.add_peer_chunks(black_box(&half));
            picker.remove_peer_chunks(black_box(&half));
        });
    });
    group.bench_function("peer_joins_and_leaves_sparse", |b| {
        let mut picker = PiecePicker::new(CHUNKS, 1);
        b.iter(|| {
            picker.add_peer_chunks(black_box(&sparse));
            picker.remove_peer_chunks(black_box(&sparse));
        });
    });
    // 32 peers with half the chunks each; a pick for one of them that has
    // a twentieth, handed back at once.
    let mut picker = PiecePicker::new(CHUNKS, 1);
    for _ in 0..32 {
        picker.add_peer_chunks(&some(&mut rng, 50));
    }
    let now = Instant::now();
    group.bench_function("pick_and_release_for_a_sparse_peer_of_32", |b| {
        b.iter(|| {
            let chunk = picker.pick(LinkId(1), black_box(&sparse), now).unwrap();
            picker.release(chunk, LinkId(1));
        });
    });
    group.finish();

    let mut group = c.benchmark_group("bitfield_4096");
    group.bench_function("count_ones_half", |b| {
        b.iter(|| black_box(&half).count_ones())
    });
    group.bench_function("iter_ones_half", |b| {
        b.iter(|| black_box(&half).iter_ones().count())
    });
    group.bench_function("get_every_chunk_half", |b| {
        b.iter(|| {
            (0..CHUNKS)
                .filter(|&chunk| black_box(&half).get(ChunkIndex(chunk)))
                .count()
        })
    });
    group.bench_function("set_and_clear_every_chunk", |b| {
        let mut bits = HaveBitfield::new(CHUNKS);
        b.iter(|| {
            for chunk in 0..CHUNKS {
                bits.set(ChunkIndex(chunk), true).unwrap();
            }
            for chunk in 0..CHUNKS {
                bits.set(ChunkIndex(chunk), false).unwrap();
            }
        })
    });
    group.bench_function("from_bytes_half", |b| {
        let bytes = half.as_bytes().to_vec();
        b.iter(|| HaveBitfield::from_bytes(black_box(bytes.clone()), CHUNKS).unwrap())
    });
    group.finish();
}

criterion_group!(benches, picker);
criterion_main!(benches);
