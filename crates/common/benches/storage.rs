//! Criterion benchmarks of the storage hot paths. `cargo xtask bench storage` gives the
//! end-to-end figures against reference tools; these isolate the pieces:
//! sha2-256 of a 1 MiB chunk, CID-only UnixFS import of 64 MiB, and 1,000 × 4 KiB blocks put
//! (one durable commit) and read back verified.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipfs_accelerate_common::cid::{sha256, Block, Cid, RAW};
use ipfs_accelerate_common::store::{Store, StoreOptions};
use ipfs_accelerate_common::unixfs::{import, Profile};

/// The bytes of seed 1 of the tests' generator (the same stream this bench always used).
fn data(len: usize) -> Vec<u8> {
    tests::pseudo_random(1, len)
}

fn hashing(c: &mut Criterion) {
    let chunk = data(1 << 20);
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("sha2-256 1 MiB", |b| b.iter(|| sha256(black_box(&chunk))));
    group.finish();

    let file = data(64 << 20);
    let mut group = c.benchmark_group("unixfs");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.sample_size(10);
    for profile in [Profile::UnixfsV1_2025, Profile::UnixfsV0_2015] {
        group.bench_function(format!("cid-only import 64 MiB {profile}"), |b| {
            b.iter(|| import(black_box(&file[..]), profile, &mut |_| Ok(())))
        });
    }
    group.finish();
}

fn small_blocks(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime.block_on(Store::open(dir.path(), StoreOptions::default())).expect("store");
    let mut round = 0u64;
    let mut batch = || {
        round += 1;
        (0..1000u64)
            .map(|i| {
                let mut bytes = data(4096);
                bytes[..16].copy_from_slice(&[round.to_le_bytes(), i.to_le_bytes()].concat());
                Block::new(cid::Version::V1, RAW, bytes)
            })
            .collect::<Vec<_>>()
    };
    let mut group = c.benchmark_group("blocks");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    group.bench_function("put 1000 x 4 KiB, one commit", |b| {
        b.iter_batched(
            &mut batch,
            |blocks| runtime.block_on(store.put_blocks(blocks)),
            BatchSize::PerIteration,
        )
    });
    let stored = batch();
    let cids: Vec<Cid> = stored.iter().map(|b| *b.cid()).collect();
    runtime.block_on(store.put_blocks(stored)).expect("put");
    group.bench_function("get 1000 x 4 KiB, verified", |b| {
        b.iter(|| runtime.block_on(store.get_blocks(black_box(cids.clone()))))
    });
    group.finish();
}

criterion_group!(benches, hashing, small_blocks);
criterion_main!(benches);
