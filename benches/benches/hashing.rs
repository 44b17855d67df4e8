//! The fetch's hot paths, each on its own (figures in
//! `docs/performance.md`, "Hot paths"):
//!
//! - `leaf_hash`: the SHA-256 of one 1 MiB chunk as the fetch computes it
//!   (`ChunkData::sha256`, SHA-NI when the CPU has it), contiguous and in
//!   the 1,452-byte parts a chunk comes off the network in; beside it a
//!   multi-buffer SHA-256 (`tape-sha256` 0.2.2) given 1 to 16 whole chunks
//!   at once, and the same with the parts first gathered into one buffer
//!   each (it takes contiguous messages only). On a CPU with AVX-512 and
//!   SHA-NI that crate hashes whole groups of 16 in AVX-512 lanes and
//!   fewer than 13 left over as up to four interleaved SHA-NI streams:
//!   here 1 to 8 chunks measure the interleaved SHA-NI streams, 16 the
//!   AVX-512 lanes;
//! - `pair`: two SHA-256 passes in one (`minimodel-sha256x2`): a chunk
//!   in the parts it arrived in beside a 1 MiB block read back for the
//!   whole-file hash, side by side and one after the other, against one
//!   chunk alone;
//! - `whole_file`: the full-file SHA-256 of 256 MiB, hashed from memory
//!   (what hashing the written buffers would cost), read back from the
//!   page cache in 1 MiB blocks (what the fetch does), the read-back alone,
//!   and the same bytes copied from memory through the same 1 MiB buffer
//!   for scale;
//! - `store_write`: writing 256 MiB in 1 MiB chunks into a `.part`:
//!   buffered `pwritev` of the parts (what the fetch does), the same
//!   followed by `fdatasync`, and `O_DIRECT` from a 4 KiB-aligned buffer
//!   the parts are first copied into (what `O_DIRECT` would need; on the
//!   disk when it returns); then the whole-file hash reading the file back
//!   after each.
//!
//! Every path's digests are checked against `sha2` once before the timing.
//!
//! `cargo bench -p minimodel-benches --bench hashing`
//!
//! Files live under Cargo's bench temp directory (`target/tmp`), not
//! `/tmp`, which may be a tmpfs that refuses `O_DIRECT`.

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use minimodel_swarm::store::{FileStorage, Storage};
use minimodel_verifier::aligned::AlignedBuf;
use minimodel_verifier::chunk::ChunkData;
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
/// Payload of one QUIC packet at a 1,500-byte MTU, roughly: the size of the
/// parts a chunk arrives in.
const PART: usize = 1452;
const FILE_MIB: usize = 256;
const BLOCK: usize = 1 << 20;

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn in_parts(bytes: &[u8]) -> ChunkData {
    let mut data = ChunkData::new();
    for part in bytes.chunks(PART) {
        data.push(Bytes::copy_from_slice(part));
    }
    data
}

fn gather(data: &ChunkData, into: &mut Vec<u8>) {
    into.clear();
    for part in data.parts() {
        into.extend_from_slice(part);
    }
}

fn leaf_hash(c: &mut Criterion) {
    let chunks: Vec<Vec<u8>> = (0..16).map(|i| pseudo_random(CHUNK, i)).collect();
    let parted: Vec<ChunkData> = chunks.iter().map(|chunk| in_parts(chunk)).collect();
    // Same digests from every path, or the comparison means nothing.
    let messages: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut digests = vec![[0u8; 32]; messages.len()];
    tape_sha256::hash_many(&messages, &mut digests);
    let mut gathered: Vec<Vec<u8>> = vec![Vec::with_capacity(CHUNK); parted.len()];
    for (buffer, data) in gathered.iter_mut().zip(&parted) {
        gather(data, buffer);
    }
    let gathered_messages: Vec<&[u8]> = gathered.iter().map(Vec::as_slice).collect();
    let mut gathered_digests = vec![[0u8; 32]; gathered_messages.len()];
    tape_sha256::hash_many(&gathered_messages, &mut gathered_digests);
    for (((chunk, parts), digest), gathered) in chunks
        .iter()
        .zip(&parted)
        .zip(&digests)
        .zip(&gathered_digests)
    {
        let single: [u8; 32] = Sha256::digest(chunk).into();
        assert_eq!(&single, digest);
        assert_eq!(&single, gathered);
        assert_eq!(parts.sha256().0, single);
    }
    eprintln!(
        "multi-buffer backend for groups of {}: {} (fewer than 13 left over may run as interleaved SHA-NI streams)",
        tape_sha256::lane_width(),
        tape_sha256::backend(),
    );

    let mut group = c.benchmark_group("leaf_hash");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(CHUNK as u64));
    let contiguous = ChunkData::from(chunks[0].clone());
    group.bench_function("sha_ni_contiguous", |b| {
        b.iter(|| black_box(contiguous.sha256()))
    });
    group.bench_function("sha_ni_in_parts", |b| {
        b.iter(|| black_box(parted[0].sha256()))
    });
    for n in [1usize, 2, 3, 4, 8, 16] {
        group.throughput(Throughput::Bytes((n * CHUNK) as u64));
        let batch = &messages[..n];
        let mut out = vec![[0u8; 32]; n];
        group.bench_with_input(BenchmarkId::new("multi_buffer", n), &n, |b, _| {
            b.iter(|| {
                tape_sha256::hash_many(batch, &mut out);
                black_box(&out);
            })
        });
        let mut buffers: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(CHUNK)).collect();
        group.bench_with_input(BenchmarkId::new("multi_buffer_gathered", n), &n, |b, _| {
            b.iter(|| {
                for (buffer, data) in buffers.iter_mut().zip(&parted) {
                    gather(data, buffer);
                }
                let batch: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                tape_sha256::hash_many(&batch, &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn pair(c: &mut Criterion) {
    use minimodel_sha256x2::{Sha256 as Lane, pairs_side_by_side, update_pair};
    let chunk = pseudo_random(CHUNK, 1);
    let parted = in_parts(&chunk);
    let block = pseudo_random(CHUNK, 2);
    let parts = || parted.parts().iter().map(|part| &part[..]);
    let (mut leaf, mut file) = (Lane::new(), Lane::new());
    update_pair(&mut leaf, parts(), &mut file, [&block[..]]);
    assert_eq!(leaf.finalize(), parted.sha256().0);
    assert_eq!(file.finalize(), <[u8; 32]>::from(Sha256::digest(&block)));
    eprintln!(
        "two hashes side by side on this CPU: {}",
        pairs_side_by_side()
    );

    let mut group = c.benchmark_group("pair");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(2 * CHUNK as u64));
    group.bench_function("side_by_side", |b| {
        b.iter(|| {
            let (mut leaf, mut file) = (Lane::new(), Lane::new());
            update_pair(&mut leaf, parts(), &mut file, [&block[..]]);
            black_box((leaf.finalize(), file.finalize()))
        })
    });
    group.bench_function("side_by_side_contiguous", |b| {
        b.iter(|| {
            let (mut leaf, mut file) = (Lane::new(), Lane::new());
            update_pair(&mut leaf, [&chunk[..]], &mut file, [&block[..]]);
            black_box((leaf.finalize(), file.finalize()))
        })
    });
    group.bench_function("one_after_the_other", |b| {
        b.iter(|| {
            let (mut leaf, mut file) = (Lane::new(), Lane::new());
            for part in parts() {
                leaf.update(part);
            }
            file.update(&block);
            black_box((leaf.finalize(), file.finalize()))
        })
    });
    group.bench_function("sha2_one_after_the_other", |b| {
        b.iter(|| black_box((parted.sha256(), Sha256::digest(&block))))
    });
    group.finish();
}

fn write_file(path: &Path, bytes: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

/// SHA-256 of the file read back in 1 MiB blocks, as the trailing hasher
/// reads the `.part`.
fn read_back_sha256(storage: &FileStorage, len: usize, buf: &mut [u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < len {
        let take = BLOCK.min(len - offset);
        storage
            .read_exact_at(offset as u64, &mut buf[..take])
            .unwrap();
        hasher.update(&buf[..take]);
        offset += take;
    }
    hasher.finalize().into()
}

fn whole_file(c: &mut Criterion) {
    let len = FILE_MIB << 20;
    let bytes = pseudo_random(len, 99);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("whole.part");
    write_file(&path, &bytes);
    let storage = FileStorage::open_read_only(&path).unwrap();
    let mut aligned = AlignedBuf::zeroed(BLOCK);
    let buf = aligned.as_mut_slice();
    let expected: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(read_back_sha256(&storage, len, buf), expected);

    let mut group = c.benchmark_group("whole_file");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("sha256_from_memory", |b| {
        b.iter(|| black_box(<[u8; 32]>::from(Sha256::digest(&bytes))))
    });
    group.bench_function("sha256_read_back", |b| {
        b.iter(|| black_box(read_back_sha256(&storage, len, buf)))
    });
    // The kernel's copy into memory by where the buffer starts: on a
    // cache line (what the trailing hasher reads into), and 16 bytes past a
    // page boundary (where the allocator puts a large `Vec`), just after
    // where each page of the page cache starts.
    for (name, past_a_page) in [
        ("read_back_only", None),
        ("read_back_only_16_past_a_page", Some(16)),
    ] {
        let mut window = AlignedBuf::zeroed(BLOCK + 8192);
        let skip = past_a_page.map_or(0, |past| {
            let addr = window.as_slice().as_ptr().addr();
            (4096 - addr % 4096) % 4096 + past
        });
        let block = &mut window.as_mut_slice()[skip..skip + BLOCK];
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut offset = 0;
                while offset < len {
                    storage.read_exact_at(offset as u64, block).unwrap();
                    offset += BLOCK;
                }
                black_box(&block);
            })
        });
    }
    group.bench_function("copy_through_block", |b| {
        b.iter(|| {
            for block in bytes.chunks(BLOCK) {
                buf[..block.len()].copy_from_slice(block);
                black_box(&buf);
            }
        })
    });
    group.finish();
}

/// `path` opened for reading and writing with `O_DIRECT`.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
}

/// `O_DIRECT` is Linux's own: the direct-write rows run only there.
#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> std::io::Result<File> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "this bench's O_DIRECT rows run on Linux only",
    ))
}

/// A 4 KiB-aligned window of `len` bytes into a slightly larger buffer,
/// which `O_DIRECT` asks for.
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let buf = vec![0u8; len + 4096];
        let start = buf.as_ptr().align_offset(4096);
        Self { buf, start, len }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

fn store_write(c: &mut Criterion) {
    let len = FILE_MIB << 20;
    let chunks: Vec<ChunkData> = (0..FILE_MIB as u64)
        .map(|i| in_parts(&pseudo_random(CHUNK, 1000 + i)))
        .collect();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("store.part");
    let mut aligned = AlignedBuf::zeroed(BLOCK);
    let buf = aligned.as_mut_slice();

    let mut group = c.benchmark_group("store_write");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(len as u64));

    let expected: [u8; 32] = {
        let mut hasher = Sha256::new();
        for chunk in &chunks {
            for part in chunk.parts() {
                hasher.update(part);
            }
        }
        hasher.finalize().into()
    };
    let buffered = FileStorage::open_sized(&path, len as u64).unwrap();
    let write_buffered = |storage: &FileStorage| {
        for (index, chunk) in chunks.iter().enumerate() {
            storage
                .write_parts_at((index * CHUNK) as u64, chunk.parts())
                .unwrap();
        }
    };
    write_buffered(&buffered);
    assert_eq!(read_back_sha256(&buffered, len, buf), expected);
    group.bench_function("buffered_pwritev", |b| b.iter(|| write_buffered(&buffered)));
    group.bench_function("buffered_pwritev_fdatasync", |b| {
        b.iter(|| {
            write_buffered(&buffered);
            buffered.sync_data().unwrap();
        })
    });
    group.bench_function("buffered_then_read_back", |b| {
        b.iter(|| {
            write_buffered(&buffered);
            black_box(read_back_sha256(&buffered, len, buf));
        })
    });
    drop(buffered);

    let direct = match open_direct(&path) {
        Ok(file) => file,
        Err(error) => panic!(
            "cannot open {} with O_DIRECT (the file system must allow it): {error}",
            path.display()
        ),
    };
    let mut aligned = Aligned::new(CHUNK);
    let mut write_direct = |file: &File| {
        for (index, chunk) in chunks.iter().enumerate() {
            let target = aligned.as_mut_slice();
            let mut at = 0;
            for part in chunk.parts() {
                target[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            minimodel_swarm::platform::write_all_at(file, target, (index * CHUNK) as u64).unwrap();
        }
    };
    group.bench_function("o_direct_aligned_copy", |b| {
        b.iter(|| write_direct(&direct))
    });
    let reader = FileStorage::open_read_only(&path).unwrap();
    std::fs::write(&path, vec![0u8; len]).unwrap();
    write_direct(&direct);
    assert_eq!(read_back_sha256(&reader, len, buf), expected);
    group.bench_function("o_direct_then_read_back", |b| {
        b.iter(|| {
            write_direct(&direct);
            black_box(read_back_sha256(&reader, len, buf));
        })
    });
    group.finish();
}

criterion_group!(benches, leaf_hash, pair, whole_file, store_write);
criterion_main!(benches);
