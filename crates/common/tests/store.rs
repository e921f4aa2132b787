//! The embedded store through its public async API, on real files in temp directories.

// Tests of the storage crate inspect and damage its files on purpose; a test's unwrap is its assertion.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use tests::kubo as common;

use std::io::Read;

use ipfs_accelerate_common::cid::{parse, raw_cid, Block, Cid, RAW};
use ipfs_accelerate_common::store::{
    AddOptions, Expect, Name, PinMode, Range, Store, StoreOptions,
};
use ipfs_accelerate_common::unixfs::Profile;
use ipfs_accelerate_common::Error;
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), StoreOptions::default()).await.unwrap()
}

fn pinned(profile: Profile) -> AddOptions {
    AddOptions { profile, pin: true, ..AddOptions::default() }
}

fn name(text: &str) -> Name {
    text.parse().unwrap()
}

fn seeded(seed: &str, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    common::KuboBytes::new(seed, len as u64).read_exact(&mut data).unwrap();
    data
}

/// Every block file under the store, largest first.
fn block_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = tests::files_under(&dir.join("blocks"));
    files.sort_by_key(|(_, bytes)| std::cmp::Reverse(bytes.len()));
    files.into_iter().map(|(path, _)| path).collect()
}

#[test]
fn add_then_cat_round_trips_each_profile_and_matches_the_cid_only_import() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        for profile in Profile::ALL {
            for len in [
                0,
                1,
                1000,
                profile.chunk_size(),
                profile.chunk_size() + 1,
                3 * profile.chunk_size() - 7,
            ] {
                let data = seeded("rt", len);
                let expected =
                    ipfs_accelerate_common::unixfs::import(&data[..], profile, &mut |_| Ok(()))
                        .unwrap();
                let added = store.add_bytes(data.clone(), pinned(profile)).await.unwrap();
                assert_eq!(added.root, expected.root, "{profile} {len}");
                assert_eq!(added.size, len as u64);
                assert_eq!(store.cat_bytes(&added.root).await.unwrap(), data, "{profile} {len}");
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Sizes around chunk and link boundaries (small link counts reach the second level fast
    /// only with many chunks, so the KuboCidV1 profile and 174-link boundaries are covered by
    /// the seeded cases above; here: arbitrary bytes, arbitrary ranges).
    #[test]
    fn range_reads_equal_slices(
        data in proptest::collection::vec(any::<u8>(), 0..600_000),
        offset in 0usize..700_000,
        length in proptest::option::of(0usize..700_000),
        profile in prop_oneof![Just(Profile::KuboCidV1), Just(Profile::UnixfsV0_2015), Just(Profile::UnixfsV1_2025)],
    ) {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(&dir).await;
            let added = store.add_bytes(data.clone(), pinned(profile)).await.unwrap();
            let mut out = Vec::new();
            let range = Range { offset: offset as u64, length: length.map(|l| l as u64) };
            let n = store.cat_to(&added.root, range, &mut out).await.unwrap();
            let start = offset.min(data.len());
            let end = length.map_or(data.len(), |l| (offset.saturating_add(l)).min(data.len()));
            let expected = if start < end { &data[start..end] } else { &[][..] };
            prop_assert_eq!(n as usize, expected.len());
            prop_assert_eq!(&out[..], expected);
            Ok(())
        })?;
    }
}

#[test]
fn a_two_level_dag_round_trips_and_range_reads_skip_blocks() {
    // 175 chunks of 256 KiB: one more than a node holds, so the root has two children.
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let chunk = Profile::KuboCidV1.chunk_size();
        let data = seeded("two-level", 175 * chunk + 3);
        let added = store.add_bytes(data.clone(), pinned(Profile::KuboCidV1)).await.unwrap();
        assert_eq!(store.cat_bytes(&added.root).await.unwrap(), data);
        let mut out = Vec::new();
        let offset = 174 * chunk - 2;
        store
            .cat_to(&added.root, Range { offset: offset as u64, length: Some(10) }, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data[offset..offset + 10]);
    });
}

#[test]
fn a_flipped_bit_fails_cat_and_verify_naming_the_block_and_repair_restores_it() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let data = seeded("flip", 3 * 1024 * 1024);
        let added = store.add_bytes(data.clone(), pinned(Profile::UnixfsV1_2025)).await.unwrap();
        let victim = &block_files(dir.path())[0];
        let mut bytes = std::fs::read(victim).unwrap();
        bytes[12345] ^= 0x10;
        std::fs::write(victim, &bytes).unwrap();

        let mut out = Vec::new();
        let err = store.cat_to(&added.root, Range::default(), &mut out).await.unwrap_err();
        let Error::Corrupt { cid, .. } = &err else { panic!("expected Corrupt, got {err}") };
        assert!(data.starts_with(&out), "only verified bytes were written");
        let report = store.verify().await.unwrap();
        assert_eq!(report.corrupt, vec![cid.clone()]);
        assert!(report.missing.is_empty());

        // Another store holding the same content repairs this one.
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(&other_dir).await;
        other.add_bytes(data.clone(), pinned(Profile::UnixfsV1_2025)).await.unwrap();
        let repair = store.repair(&other).await.unwrap();
        assert_eq!(repair.repaired, vec![cid.clone()]);
        assert!(store.verify().await.unwrap().is_ok());
        assert_eq!(store.cat_bytes(&added.root).await.unwrap(), data);
    });
}

#[test]
fn a_corrupt_inline_block_is_never_returned() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let added = store.add_bytes(b"small value".to_vec(), AddOptions::default()).await.unwrap();
        let db = rusqlite::Connection::open(dir.path().join("meta.sqlite")).unwrap();
        db.execute("UPDATE blocks SET data = ?1 WHERE data IS NOT NULL", [b"smaLl value".to_vec()])
            .unwrap();
        let err = store.get_block(&added.root).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(store.verify().await.unwrap().corrupt, vec![added.root.to_string()]);
    });
}

#[test]
fn gc_removes_only_what_is_not_pinned_or_named() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let big = |seed| seeded(seed, 2 * 1024 * 1024 + 5);
        let kept = store.add_bytes(big("kept"), pinned(Profile::UnixfsV1_2025)).await.unwrap();
        let named = store.add_bytes(big("named"), AddOptions::default()).await.unwrap();
        store.name_set(&name("models/current"), &named.root, Expect::Absent).await.unwrap();
        let direct = store.add_bytes(b"direct".to_vec(), AddOptions::default()).await.unwrap();
        store.pin(&direct.root, PinMode::Direct).await.unwrap();
        let loose = store.add_bytes(big("loose"), AddOptions::default()).await.unwrap();

        let before = store.status().await.unwrap();
        assert_eq!(
            before.usage.reclaimable_bytes,
            store.stat(&loose.root).await.unwrap().dag.bytes_present
        );
        let report = store.gc().await.unwrap();
        assert_eq!(report.bytes_freed, before.usage.reclaimable_bytes);
        assert!(report.blocks_removed >= 3);

        for root in [kept.root, named.root, direct.root] {
            assert!(store.cat_bytes(&root).await.is_ok(), "{root}");
        }
        assert!(matches!(store.cat_bytes(&loose.root).await, Err(Error::NotFound { .. })));
        assert!(store.verify().await.unwrap().is_ok());
        assert_eq!(store.gc().await.unwrap().blocks_removed, 0, "a second GC finds nothing");

        // Unpin and unname: now everything goes.
        store.unpin(&kept.root).await.unwrap();
        store.name_remove(&name("models/current"), Expect::Cid(named.root)).await.unwrap();
        store.unpin(&direct.root).await.unwrap();
        store.gc().await.unwrap();
        assert_eq!(store.status().await.unwrap().usage.blocks, 0);
        assert!(matches!(store.unpin(&kept.root).await, Err(Error::NotPinned { .. })));
    });
}

#[test]
fn a_recursive_pin_needs_the_whole_dag() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        // A DAG with one leaf missing, as a partial transfer leaves it.
        let mut blocks = Vec::new();
        let data = seeded("partial", 3 * 1024 * 1024);
        let imported =
            ipfs_accelerate_common::unixfs::import(&data[..], Profile::UnixfsV1_2025, &mut |b| {
                blocks.push(b);
                Ok(())
            })
            .unwrap();
        let lost = blocks.remove(1);
        store.put_blocks(blocks).await.unwrap();
        let err = store.pin(&imported.root, PinMode::Recursive).await.unwrap_err();
        assert!(matches!(&err, Error::NotFound { cid } if *cid == lost.cid().to_string()), "{err}");
        store.pin(&imported.root, PinMode::Direct).await.unwrap();
        store.unpin(&imported.root).await.unwrap();
        assert!(store.pins().await.unwrap().is_empty());
        let missing = raw_cid(b"never stored");
        assert!(matches!(store.pin(&missing, PinMode::Direct).await, Err(Error::NotFound { .. })));
    });
}

#[test]
fn names_compare_and_swap_and_keep_history() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let a = store.add_bytes(b"a".to_vec(), AddOptions::default()).await.unwrap().root;
        let b = store.add_bytes(b"b".to_vec(), AddOptions::default()).await.unwrap().root;

        assert_eq!(store.name_set(&name("ns/n"), &a, Expect::Absent).await.unwrap(), 1);
        let err = store.name_set(&name("ns/n"), &b, Expect::Absent).await.unwrap_err();
        assert!(matches!(err, Error::NameConflict { .. }), "{err}");
        let err = store.name_set(&name("ns/n"), &b, Expect::Cid(b)).await.unwrap_err();
        assert!(matches!(err, Error::NameConflict { .. }), "{err}");
        assert_eq!(store.name_set(&name("ns/n"), &b, Expect::Cid(a)).await.unwrap(), 2);
        assert_eq!(store.name_get(&name("ns/n")).await.unwrap().cid, b.to_string());
        store.name_remove(&name("ns/n"), Expect::Any).await.unwrap();
        assert!(matches!(store.name_get(&name("ns/n")).await, Err(Error::NameNotFound { .. })));
        assert_eq!(store.name_set(&name("ns/n"), &a, Expect::Absent).await.unwrap(), 4);

        let history: Vec<_> =
            store.name_history(&name("ns/n")).await.unwrap().into_iter().map(|h| h.cid).collect();
        assert_eq!(
            history,
            vec![Some(a.to_string()), None, Some(b.to_string()), Some(a.to_string())]
        );
        assert_eq!(store.name_list(Some("ns")).await.unwrap().len(), 1);
        assert!(store.name_list(Some("other")).await.unwrap().is_empty());

        for bad in ["", "a", "/n", "ns/", "a/b/c", "tab\there/n", &format!("{}/n", "x".repeat(256))]
        {
            let err = bad.parse::<Name>().unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        }
        // A name must point at content that is here.
        let err =
            store.name_set(&name("ns/ghost"), &raw_cid(b"ghost"), Expect::Any).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    });
}

#[test]
fn car_export_then_import_into_a_fresh_store_gives_identical_cids_and_bytes() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        for profile in Profile::ALL {
            let data = seeded("car", 2 * profile.chunk_size() + 11);
            let added = store.add_bytes(data.clone(), pinned(profile)).await.unwrap();
            let mut car = Vec::new();
            let blocks = store.export_car(&added.root, &mut car).await.unwrap();
            assert_eq!(blocks, added.blocks);

            let fresh_dir = tempfile::tempdir().unwrap();
            let fresh = open(&fresh_dir).await;
            let imported = fresh.import_car(&car[..], true).await.unwrap();
            assert_eq!(imported.roots, vec![added.root.to_string()]);
            assert_eq!(fresh.cat_bytes(&added.root).await.unwrap(), data);
            assert_eq!(fresh.pins().await.unwrap()[0].cid, added.root.to_string());

            let mut again = Vec::new();
            fresh.export_car(&added.root, &mut again).await.unwrap();
            assert_eq!(again, car, "export is deterministic");
        }
    });
}

#[test]
fn bad_cars_are_clear_errors_and_touch_nothing_stored() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let data = seeded("bad-car", 3 * 1024 * 1024);
        let added = store.add_bytes(data.clone(), pinned(Profile::UnixfsV1_2025)).await.unwrap();
        let mut car = Vec::new();
        store.export_car(&added.root, &mut car).await.unwrap();

        let target_dir = tempfile::tempdir().unwrap();
        let target = open(&target_dir).await;
        let keep =
            target.add_bytes(b"precious".to_vec(), pinned(Profile::UnixfsV1_2025)).await.unwrap();

        // Truncated in the middle of a block.
        let err = target.import_car(&car[..car.len() / 2], true).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCar { .. }), "{err}");
        // Truncated at a block boundary: the root's DAG is incomplete, so it is not pinned.
        let cut = car.len() - (1024 * 1024 + 38); // the last leaf: varint(2) + CIDv1 raw(36) + 1 MiB
        let err = target.import_car(&car[..cut], true).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        // A flipped byte inside a block body.
        let mut flipped = car.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        let err = target.import_car(&flipped[..], true).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        // Garbage.
        let err = target.import_car(&b"not a car file at all"[..], false).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCar { .. }), "{err}");

        assert_eq!(target.pins().await.unwrap().len(), 1);
        assert_eq!(target.cat_bytes(&keep.root).await.unwrap(), b"precious");
        target.gc().await.unwrap();
        assert_eq!(target.cat_bytes(&keep.root).await.unwrap(), b"precious");
        assert!(target.verify().await.unwrap().is_ok());
    });
}

#[test]
fn the_budget_evicts_least_recently_used_unpinned_content_first() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), StoreOptions { budget: Some(5 * 1024 * 1024) }).await.unwrap();
        let pinned_root = store
            .add_bytes(seeded("pinned", 4 << 20), pinned(Profile::UnixfsV1_2025))
            .await
            .unwrap()
            .root;
        let first =
            store.add_bytes(seeded("first", 1 << 20), AddOptions::default()).await.unwrap().root;
        // Over budget now (5 MiB + nodes): only unpinned, non-current content may go.
        let second =
            store.add_bytes(seeded("second", 1 << 20), AddOptions::default()).await.unwrap().root;
        assert!(store.cat_bytes(&pinned_root).await.is_ok());
        assert!(!store.has(&first).await.unwrap(), "the older unpinned add was evicted");
        assert!(store.has(&second).await.unwrap(), "an add never evicts itself");
    });
}

#[test]
fn batch_puts_and_gets_of_small_blocks_verify() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let blocks: Vec<Block> = (0..2000u32)
            .map(|i| Block::new(cid::Version::V1, RAW, i.to_le_bytes().repeat(1024)))
            .collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        let added = store.put_blocks(blocks.clone()).await.unwrap();
        assert_eq!(added, 2000 * 4096);
        assert_eq!(
            store.put_blocks(blocks.clone()).await.unwrap(),
            0,
            "present blocks cost nothing"
        );
        assert_eq!(store.get_blocks(cids).await.unwrap(), blocks);
    });
}

#[test]
fn parse_errors_are_specific() {
    assert!(matches!(parse("QmNotAValidCid"), Err(Error::InvalidCid { .. })));
    let cbor = Cid::new_v1(0x71, ipfs_accelerate_common::cid::sha256(b"x")).to_string();
    assert!(matches!(parse(&cbor), Err(Error::UnsupportedCid { .. })), "dag-cbor is not served");
}

#[test]
fn the_journal_is_compacted_by_gc_and_still_rebuilds_the_index() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let keep = store
            .add_bytes(b"a small pinned file".to_vec(), pinned(Profile::default()))
            .await
            .unwrap();
        store.name_set(&name("model/keep"), &keep.root, Expect::Any).await.unwrap();
        // 2.4 MB of small unpinned blobs, all in the journal.
        for i in 0..600u32 {
            let mut blob = vec![0u8; 4096];
            blob[..4].copy_from_slice(&i.to_le_bytes());
            store.add_bytes(blob, AddOptions::default()).await.unwrap();
        }
        let journal = dir.path().join("journal.log");
        let grown = std::fs::metadata(&journal).unwrap().len();
        assert!(grown > 2_400_000, "{grown}");
        store.gc().await.unwrap();
        let compacted = std::fs::metadata(&journal).unwrap().len();
        assert!(compacted < 4096, "the dead blobs are gone from the journal: {compacted}");
        drop(store);

        std::fs::remove_file(dir.path().join("meta.sqlite")).unwrap();
        let err = Store::open(dir.path(), StoreOptions::default()).await.unwrap_err();
        assert!(matches!(err, Error::StoreIndex { .. }), "{err}");
        let (store, report) =
            Store::rebuild_index(dir.path(), StoreOptions::default()).await.unwrap();
        assert_eq!((report.pins, report.names, report.journal_blocks), (1, 1, 1), "{report:?}");
        assert_eq!(store.cat_bytes(&keep.root).await.unwrap(), b"a small pinned file");
        assert_eq!(store.name_get(&name("model/keep")).await.unwrap().cid, keep.root.to_string());
    });
}
