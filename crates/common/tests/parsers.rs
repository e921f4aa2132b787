//! Parsers fed arbitrary and mutated input: they return typed errors, never panic, and never
//! let a corrupt byte through. (`cargo fuzz` needs a nightly toolchain, which cannot be fetched
//! here; these property tests cover the same surfaces on stable.)

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use ipfs_accelerate_common::cid::{self, Block, Cid};
use ipfs_accelerate_common::store::{AddOptions, Store, StoreOptions};
use ipfs_accelerate_common::unixfs::pb::{PbNode, UnixfsData};
use ipfs_accelerate_common::unixfs::{import, read_range, BlockSource, Profile};
use ipfs_accelerate_common::Error;
use proptest::prelude::*;
use prost::Message;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A valid CAR of a two-chunk file, built once.
fn valid_car() -> (Vec<u8>, Vec<u8>) {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let options = AddOptions { profile: Profile::KuboCidV1, ..AddOptions::default() };
        let added = store.add_bytes(data.clone(), options).await.unwrap();
        let mut car = Vec::new();
        store.export_car(&added.root, &mut car).await.unwrap();
        (car, data)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cid_parsing_never_panics(text in ".{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = cid::parse(&text);
        let _ = cid::from_bytes(&bytes);
    }

    #[test]
    fn dag_pb_and_unixfs_decoding_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let id = cid::raw_cid(&bytes);
        if let Ok(node) = PbNode::decode(&id, &bytes) {
            if let Some(data) = node.data {
                let _ = UnixfsData::decode_for(&id, &data);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Flip, cut or splice a valid CAR anywhere: the import either fails with a typed error or
    /// stores only verified blocks, and whatever it stored reads back as the original bytes.
    #[test]
    fn mutated_cars_are_rejected_or_verified(
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (car, data) = valid_car();
        let mut bytes = car.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
            match store.import_car(&bytes[..], true).await {
                Ok(imported) => {
                    // Whatever import accepted and pinned reads back as the original bytes.
                    for root in &imported.roots {
                        let root = cid::parse(root).unwrap();
                        prop_assert_eq!(store.cat_bytes(&root).await.unwrap(), data.clone());
                    }
                }
                Err(
                    Error::InvalidCar { .. }
                    | Error::Corrupt { .. }
                    | Error::NotFound { .. }
                    | Error::UnsupportedCid { .. }
                    | Error::InvalidCid { .. }
                    | Error::MalformedBlock { .. },
                ) => {}
                Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
            }
            prop_assert!(store.verify().await.unwrap().is_ok());
            Ok(())
        })?;
    }
}

/// A DAG whose nodes lie about their sizes, or link in a cycle-free but absurdly deep chain,
/// is an error, not a panic or an endless walk.
#[test]
fn hostile_dags_are_malformed_errors() {
    struct Blocks(std::collections::HashMap<Cid, Block>);
    impl BlockSource for Blocks {
        fn block(&self, cid: &Cid) -> ipfs_accelerate_common::Result<Block> {
            self.0.get(cid).cloned().ok_or(Error::NotFound { cid: cid.to_string() })
        }
    }
    let mut blocks = Blocks(Default::default());
    let leaf = Block::new(cid::Version::V1, cid::RAW, b"four".to_vec());
    blocks.0.insert(*leaf.cid(), leaf.clone());

    // blocksizes says 5, the leaf holds 4.
    let liar = PbNode {
        links: vec![ipfs_accelerate_common::unixfs::pb::Link {
            cid: *leaf.cid(),
            name: String::new(),
            tsize: 4,
        }],
        data: Some(UnixfsData::file(None, 5, vec![5]).encode_to_vec()),
    };
    let liar = Block::new(cid::Version::V1, cid::DAG_PB, liar.encode());
    blocks.0.insert(*liar.cid(), liar.clone());
    let err = read_range(&blocks, liar.cid(), 0, None, &mut |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::MalformedBlock { .. }), "{err}");

    // A chain 100 nodes deep.
    let mut top = *leaf.cid();
    for _ in 0..100 {
        let node = PbNode {
            links: vec![ipfs_accelerate_common::unixfs::pb::Link {
                cid: top,
                name: String::new(),
                tsize: 4,
            }],
            data: Some(UnixfsData::file(None, 4, vec![4]).encode_to_vec()),
        };
        let block = Block::new(cid::Version::V1, cid::DAG_PB, node.encode());
        top = *block.cid();
        blocks.0.insert(top, block);
    }
    let err = read_range(&blocks, &top, 0, None, &mut |_| Ok(())).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedBlock { reason, .. } if reason.contains("deeper")),
        "{err}"
    );

    // Imports of real content stay far below that depth.
    let imported = import(&vec![0u8; 3 << 20][..], Profile::KuboCidV1, &mut |_| Ok(())).unwrap();
    assert_eq!(imported.size, 3 << 20);
}
