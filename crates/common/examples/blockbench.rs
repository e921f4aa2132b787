//! 4 KiB block throughput through the store's batch API: puts with one durable commit per
//! 1,000 objects, then verified gets. Prints one JSON line; `cargo xtask bench storage` runs it.
//!
//! `cargo run --release -p ipfs-accelerate-common --example blockbench -- DIR [COUNT]`: DIR
//! should be a fresh directory; the caller removes it.

use std::time::Instant;

use ipfs_accelerate_common::cid::{Block, Cid, RAW};
use ipfs_accelerate_common::store::{Store, StoreOptions};

const BATCH: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: blockbench DIR [COUNT]")?);
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    let store = Store::open(&dir, StoreOptions::default()).await?;

    // Distinct 4 KiB objects: a counter stamped into each.
    let blocks: Vec<Block> = (0..count as u64)
        .map(|i| {
            let mut data = vec![0u8; 4096];
            for (j, chunk) in data.chunks_mut(8).enumerate() {
                chunk.copy_from_slice(
                    &(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64).to_le_bytes(),
                );
            }
            Block::new(cid::Version::V1, RAW, data)
        })
        .collect();
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();

    let started = Instant::now();
    for batch in blocks.chunks(BATCH) {
        store.put_blocks(batch.to_vec()).await?;
    }
    let put_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut read = 0usize;
    for batch in cids.chunks(BATCH) {
        read += store.get_blocks(batch.to_vec()).await?.len();
    }
    let get_secs = started.elapsed().as_secs_f64();
    assert_eq!(read, count);

    println!(
        "{{\"objects\":{count},\"object_bytes\":4096,\"batch\":{BATCH},\"puts_per_sec\":{:.0},\"gets_per_sec\":{:.0}}}",
        count as f64 / put_secs,
        count as f64 / get_secs
    );
    Ok(())
}
