//! The Kubo and S3 tiers and the tiered store against real servers on loopback: a js-ipfs node
//! speaking Kubo's RPC API (or a real Kubo given as `IPFS_BIN`) and s3s-fs, both started by
//! `cargo xtask test`.

// The tests tamper with the servers' own files and write inputs on purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use ipfs_accelerate_common::cid::{Block, RAW};
use ipfs_accelerate_common::config::S3Url;
use ipfs_accelerate_common::remote::kubo::AddOptions as KuboAdd;
use ipfs_accelerate_common::remote::{Blockstore, Kubo, KuboClient, Remote, S3};
use ipfs_accelerate_common::store::{
    AddInput, AddOptions, Outcome, Range, RemotePinState, Store, StoreOptions, TieredStore,
};
use ipfs_accelerate_common::unixfs::{self, Profile};
use ipfs_accelerate_common::Error;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};
use tests::servers::{self, unique};

const TIMEOUT: Duration = Duration::from_secs(20);

fn kubo() -> Kubo {
    Kubo::new(KuboClient::new(&servers::ipfs_api(), TIMEOUT).unwrap())
}

fn object_store(server: &servers::S3Server) -> Arc<dyn ObjectStore> {
    let store = AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_bucket_name(&server.bucket)
        .with_region("us-east-1")
        .with_access_key_id(&server.access_key)
        .with_secret_access_key(&server.secret_key)
        .with_allow_http(true)
        .build()
        .unwrap();
    Arc::new(store)
}

/// The S3 tier under a fresh prefix, and the raw object store to tamper with.
fn s3() -> (S3, Arc<dyn ObjectStore>, String) {
    let server = servers::s3();
    let prefix = unique("tiers");
    let store = object_store(&server);
    let location: S3Url = server.url(&prefix).parse().unwrap();
    (S3::new(Arc::clone(&store), &location), store, prefix)
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).await.unwrap();
    (dir, store)
}

/// Pseudo-random bytes unique to this call (so no earlier test already put them remotely).
fn content(len: usize) -> Vec<u8> {
    let seed = unique("content");
    let mut out = Vec::with_capacity(len + 64);
    let mut counter = 0u64;
    while out.len() < len {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{seed}/{counter}").as_bytes());
        out.extend_from_slice(&digest);
        counter += 1;
    }
    out.truncate(len);
    out
}

async fn cat(
    store: &TieredStore,
    cid: &Cid,
) -> ipfs_accelerate_common::Result<(Vec<u8>, Vec<Outcome>)> {
    let mut out = Vec::new();
    let read = store.cat_to(cid, Range::default(), &mut out).await?;
    Ok((out, read.tiers.iter().map(|t| t.outcome).collect()))
}

#[tokio::test]
async fn the_node_computes_the_same_cids_as_we_do_and_as_independent_calculators() {
    let client = KuboClient::new(&servers::ipfs_api(), TIMEOUT).unwrap();
    let version = client.version().await.unwrap();
    assert!(!version.version.is_empty());
    let id = client.id().await.unwrap();
    assert!(!id.id.is_empty());
    // The test node listens on loopback only.
    let addresses = id.addresses.unwrap_or_default();
    assert!(addresses.iter().all(|a| a.starts_with("/ip4/127.0.0.1/")), "{addresses:?}");
    let dir = tempfile::tempdir().unwrap();
    // One byte short of, exactly, and past one 256 KiB chunk; several chunks.
    for len in [6, 262_143, 262_144, 262_145, 1_300_000] {
        let bytes = content(len);
        for profile in [Profile::KuboCidV1, Profile::UnixfsV0_2015] {
            let ours =
                unixfs::import(std::io::Cursor::new(&bytes), profile, &mut |_| Ok(())).unwrap();
            let options = KuboAdd::for_profile(profile).unwrap();
            let node = client.add(bytes.clone(), options).await.unwrap();
            assert_eq!(node.hash, ours.root, "{len} bytes, {}", profile.name());

            // aleph-cid: an independent Rust implementation of Kubo's layout.
            let mut hasher = match profile {
                Profile::KuboCidV1 => aleph_cid::verify::Hasher::for_ipfs_v1_raw_leaves(),
                _ => aleph_cid::verify::Hasher::for_ipfs(),
            };
            hasher.update(&bytes);
            assert_eq!(hasher.finalize().as_str(), ours.root.to_string(), "aleph-cid, {len}");
        }
        // Debian's ipfs_cid: dag-pb leaves, CIDv0 (and its CIDv1 twin).
        let path = dir.path().join(format!("input-{len}"));
        std::fs::write(&path, &bytes).unwrap();
        let output = std::process::Command::new("ipfs_cid").arg(&path).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let ours =
            unixfs::import(std::io::Cursor::new(&bytes), Profile::UnixfsV0_2015, &mut |_| Ok(()))
                .unwrap();
        assert_eq!(reply["CIDv0"], ours.root.to_string(), "ipfs_cid, {len}");
    }
}

#[tokio::test]
async fn kubo_rpc_blocks_pins_and_cars_round_trip() {
    let kubo = kubo();
    let client = kubo.client();
    let block = Block::new(cid::Version::V1, RAW, content(1000));
    let stat = client.block_put(&block).await.unwrap();
    assert_eq!(stat.size, 1000);
    assert!(kubo.has(block.cid()).await.unwrap());
    assert_eq!(kubo.get(block.cid()).await.unwrap(), block);
    kubo.pin(block.cid()).await.unwrap();
    assert!(kubo.is_pinned(block.cid()).await.unwrap());
    kubo.unpin(block.cid()).await.unwrap();
    assert!(!kubo.is_pinned(block.cid()).await.unwrap());
    // A dag-pb node (a CIDv0 root) goes in under its own codec too.
    let (_dir, local) = store().await;
    let legacy = AddOptions { profile: Profile::UnixfsV0_2015, ..AddOptions::default() };
    let root = local.add_bytes(content(300_000), legacy).await.unwrap().root;
    let node = local.get_block(&root).await.unwrap();
    let stat = client.block_put(&node).await.unwrap();
    assert_eq!((stat.key.codec(), stat.key.hash()), (root.codec(), root.hash()));
    assert_eq!(kubo.get(&root).await.unwrap(), node);
    // Unpinning twice is not an error.
    kubo.unpin(block.cid()).await.unwrap();
    kubo.delete(block.cid()).await.unwrap();
    assert!(!kubo.has(block.cid()).await.unwrap());

    // dag/export of a multi-block file is a CAR our store imports, verifying every block.
    let bytes = content(700_000);
    let added =
        client.add(bytes.clone(), KuboAdd::for_profile(Profile::KuboCidV1).unwrap()).await.unwrap();
    let mut car = Vec::new();
    client.dag_export_to(&added.hash, &mut car).await.unwrap();
    let (_dir, local) = store().await;
    let imported = local.import_car(car.as_slice(), true).await.unwrap();
    assert_eq!(imported.roots, vec![added.hash.to_string()]);
    assert_eq!(local.cat_bytes(&added.hash).await.unwrap(), bytes);
    // And back: a CAR of our own imports into the node.
    let other = content(300_000);
    let ours = local
        .add_bytes(
            other.clone(),
            AddOptions { profile: Profile::KuboCidV1, ..AddOptions::default() },
        )
        .await
        .unwrap();
    let mut car = Vec::new();
    local.export_car(&ours.root, &mut car).await.unwrap();
    client.dag_import(car).await.unwrap();
    assert_eq!(client.cat_unverified(&ours.root).await.unwrap(), other);
}

/// add on one worker → push → a second worker with an empty store reads it by CID through the
/// tier, verified, and keeps a local copy.
async fn shared_through(remote: Arc<dyn Remote>) {
    let bytes = content(3 << 20);
    let (_a_dir, a) = store().await;
    let a = TieredStore::new(a, vec![Arc::clone(&remote)]);
    let added = a.add(AddInput::Bytes(bytes.clone()), AddOptions::default(), false).await.unwrap();
    assert_eq!(added.tiers.len(), 1);
    assert_eq!(added.tiers[0].outcome, Outcome::Used, "{:?}", added.tiers);
    assert!(added.tiers[0].detail.contains("pushed 4 blocks"), "{:?}", added.tiers);

    let (_b_dir, b) = store().await;
    let b = TieredStore::new(b, vec![remote]);
    assert!(!b.local().has(&added.value.root).await.unwrap());
    let (read, outcomes) = cat(&b, &added.value.root).await.unwrap();
    assert_eq!(read, bytes);
    assert_eq!(outcomes, vec![Outcome::Used]);
    // Cached locally: the second read needs no tier, and a byte range works.
    let stat = b.local().stat(&added.value.root).await.unwrap();
    assert_eq!(stat.dag.blocks_missing, 0);
    let mut part = Vec::new();
    let read = b
        .cat_to(&added.value.root, Range { offset: 5, length: Some(10) }, &mut part)
        .await
        .unwrap();
    assert_eq!(part, &bytes[5..15]);
    assert_eq!(read.tiers[0].outcome, Outcome::NotNeeded);
}

#[tokio::test]
async fn two_workers_share_content_through_kubo() {
    shared_through(Arc::new(kubo())).await;
}

#[tokio::test]
async fn two_workers_share_content_through_s3() {
    shared_through(Arc::new(s3().0)).await;
}

/// A single-block file the remote serves corrupted: the read fails naming the block, and
/// nothing is cached locally.
async fn corrupt_remote_copy_is_refused<F: std::future::Future<Output = ()>>(
    remote: Arc<dyn Remote>,
    tamper: impl FnOnce(Cid, Vec<u8>) -> F,
) {
    let bytes = content(5000);
    let (_a_dir, a) = store().await;
    let a = TieredStore::new(a, vec![Arc::clone(&remote)]);
    let root = a
        .add(AddInput::Bytes(bytes.clone()), AddOptions::default(), false)
        .await
        .unwrap()
        .value
        .root;
    tamper(root, bytes).await;

    let (_b_dir, b) = store().await;
    let b = TieredStore::new(b, vec![remote]);
    match cat(&b, &root).await {
        Err(Error::Corrupt { cid, .. }) => assert_eq!(cid, root.to_string()),
        other => panic!("expected a corruption error naming {root}, got {other:?}"),
    }
    assert!(!b.local().has(&root).await.unwrap(), "a corrupt block was cached");
    assert_eq!(b.local().status().await.unwrap().usage.blocks, 0);
}

#[tokio::test]
async fn a_corrupted_block_on_the_ipfs_node_is_an_error_naming_it() {
    corrupt_remote_copy_is_refused(Arc::new(kubo()), |_, bytes| async move {
        // The node keeps each block in a file of its own: find ours by content, flip a byte.
        let blocks = servers::ipfs_repo().join("blocks");
        let (path, mut data) = tests::files_under(&blocks)
            .into_iter()
            .find(|(_, data)| *data == bytes)
            .expect("the block's file in the node's repo");
        data[0] ^= 0xff;
        std::fs::write(path, data).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_corrupted_object_in_s3_is_an_error_naming_it() {
    let (tier, raw, prefix) = s3();
    corrupt_remote_copy_is_refused(Arc::new(tier), |root, mut bytes| async move {
        // Overwritten through the S3 API itself, as a faulty or hostile server would serve it.
        let key = object_store::path::Path::from(format!("{prefix}/blocks/{root}"));
        bytes[0] ^= 0xff;
        raw.put(&key, bytes.into()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn large_blocks_go_to_s3_as_multipart_uploads_and_come_back_verified() {
    let (tier, raw, prefix) = s3();
    let block = Block::new(cid::Version::V1, RAW, content(9 << 20));
    tier.put(&block).await.unwrap();
    let meta = raw
        .head(&object_store::path::Path::from(format!("{prefix}/blocks/{}", block.cid())))
        .await
        .unwrap();
    assert_eq!(meta.size, 9 << 20);
    // A multipart upload's ETag is the MD5 of the part MD5s, suffixed with the part count.
    assert!(meta.e_tag.as_deref().is_some_and(|e| e.contains("-2")), "{:?}", meta.e_tag);
    assert_eq!(tier.get(block.cid()).await.unwrap(), block);
}

#[tokio::test]
async fn a_remote_pin_pins_on_every_tier_and_is_recorded() {
    let (s3, _raw, _) = s3();
    let remotes: Vec<Arc<dyn Remote>> = vec![Arc::new(kubo()), Arc::new(s3)];
    let (_dir, local) = store().await;
    let store = TieredStore::new(local, remotes.clone());
    let added =
        store.add(AddInput::Bytes(content(600_000)), AddOptions::default(), true).await.unwrap();
    let root = added.value.root;
    for (remote, receipt) in remotes.iter().zip(&added.tiers) {
        assert_eq!(receipt.outcome, Outcome::Used, "{receipt:?}");
        assert!(receipt.detail.ends_with(", pinned"), "{receipt:?}");
        assert!(remote.is_pinned(&root).await.unwrap(), "{}", remote.describe());
    }
    let pins = store.remote_pins().await.unwrap();
    assert_eq!(pins.len(), 2);
    assert!(pins.iter().all(|p| p.state == RemotePinState::Pinned && p.cid == root.to_string()));
    // Confirmed remotely, the local copy is an ordinary cache: GC may take it, and a read
    // brings it back.
    store.local().gc().await.unwrap();
    assert!(!store.local().has(&root).await.unwrap());
    assert_eq!(cat(&store, &root).await.unwrap().0.len(), 600_000);
}

/// A closed port: connection refused at once.
fn dead_kubo() -> Kubo {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Kubo::new(KuboClient::new(&format!("/ip4/127.0.0.1/tcp/{port}"), TIMEOUT).unwrap())
}

#[tokio::test]
async fn a_dead_remote_degrades_add_to_local_with_a_receipt_and_a_pending_pin_survives_gc() {
    let (_dir, local) = store().await;
    let store = TieredStore::new(local, vec![Arc::new(dead_kubo())]);
    let bytes = content(400_000);
    let added =
        store.add(AddInput::Bytes(bytes.clone()), AddOptions::default(), true).await.unwrap();
    let receipt = &added.tiers[0];
    assert_eq!(receipt.outcome, Outcome::Failed);
    assert!(receipt.detail.contains("cannot connect"), "{receipt:?}");
    assert!(receipt.detail.contains("storage push"), "{receipt:?}");

    // Not pinned locally, but the remote pin is pending: GC must keep the only copy.
    let pins = store.remote_pins().await.unwrap();
    assert_eq!(pins[0].state, RemotePinState::Pending);
    assert!(pins[0].error.as_deref().is_some_and(|e| e.contains("cannot connect")));
    let gc = store.local().gc().await.unwrap();
    assert_eq!(gc.blocks_removed, 0);
    assert_eq!(store.local().cat_bytes(&added.value.root).await.unwrap(), bytes);

    let status = store.status().await.unwrap();
    assert_eq!(status.tiers[0].reachable, Some(false));
    assert!(status.tiers[0].probe.as_deref().is_some_and(|p| p.contains("cannot connect")));
}

#[tokio::test]
async fn a_remote_that_never_answers_is_abandoned_at_the_deadline() {
    // Accepts connections and never replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let client =
        KuboClient::new(&format!("/ip4/127.0.0.1/tcp/{port}"), Duration::from_millis(500)).unwrap();
    let (_dir, local) = store().await;
    let store = TieredStore::new(local, vec![Arc::new(Kubo::new(client))]);
    let added =
        store.add(AddInput::Bytes(content(100)), AddOptions::default(), false).await.unwrap();
    assert_eq!(added.tiers[0].outcome, Outcome::Failed);
    assert!(added.tiers[0].detail.contains("deadline"), "{:?}", added.tiers);
    // Local reads never wait for the tier.
    assert_eq!(cat(&store, &added.value.root).await.unwrap().1, vec![Outcome::NotNeeded]);
}

#[tokio::test]
async fn repair_replaces_a_corrupt_local_block_with_the_remote_copy() {
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(dir.path().join("store"), StoreOptions::default()).await.unwrap();
    let store = TieredStore::new(local, vec![Arc::new(kubo())]);
    // Over the inline limit, so the block is a file of its own.
    let bytes = content(200_000);
    let root = store
        .add(
            AddInput::Bytes(bytes.clone()),
            AddOptions { pin: true, ..AddOptions::default() },
            false,
        )
        .await
        .unwrap()
        .value
        .root;
    let (path, mut data) = tests::files_under(&dir.path().join("store/blocks"))
        .into_iter()
        .find(|(_, data)| data == &bytes)
        .unwrap();
    data[10] ^= 1;
    std::fs::write(&path, data).unwrap();
    assert!(store.local().cat_bytes(&root).await.is_err());

    let repaired = store.repair().await.unwrap();
    assert_eq!(repaired.value.repaired, vec![root.to_string()]);
    assert_eq!(repaired.tiers[0].outcome, Outcome::Used);
    assert_eq!(store.local().cat_bytes(&root).await.unwrap(), bytes);
}

#[tokio::test]
async fn fetch_and_push_move_whole_dags_and_report_counts() {
    let (s3, _raw, _) = s3();
    let remote: Arc<dyn Remote> = Arc::new(s3);
    let (_a_dir, a) = store().await;
    let bytes = content(2_500_000);
    // Added without tiers, then pushed explicitly.
    let root = a.add_bytes(bytes.clone(), AddOptions::default()).await.unwrap().root;
    let a = TieredStore::new(a, vec![Arc::clone(&remote)]);
    let pushed = a.push(&root).await.unwrap();
    assert_eq!(pushed.value.tiers_ok, 1);
    assert!(pushed.tiers[0].detail.starts_with("pushed 4 blocks (2500"), "{:?}", pushed.tiers);

    let (_b_dir, b) = store().await;
    let b = TieredStore::new(b, vec![remote]);
    let fetched = b.fetch(&root).await.unwrap();
    assert_eq!(fetched.value.blocks_fetched, 4);
    assert_eq!(fetched.value.blocks_local, 0);
    assert_eq!(b.local().cat_bytes(&root).await.unwrap(), bytes);
    let again = b.fetch(&root).await.unwrap();
    assert_eq!((again.value.blocks_fetched, again.value.blocks_local), (0, 4));
}

#[tokio::test]
async fn without_any_remote_fetch_and_push_say_so() {
    let (_dir, local) = store().await;
    let store = TieredStore::new(local, vec![]);
    let missing = ipfs_accelerate_common::cid::raw_cid(b"nowhere");
    assert!(matches!(store.fetch(&missing).await, Err(Error::NoRemote { .. })));
    assert!(matches!(store.push(&missing).await, Err(Error::NoRemote { .. })));
}
