//! Parsers fed arbitrary and mutated input: they return typed errors, never panic, and never
//! let a corrupt byte through. (`cargo fuzz` needs a nightly toolchain, which cannot be fetched
//! here; these property tests cover the same surfaces on stable.) Cases per property:
//! `PROPTEST_CASES` when set (`cargo xtask fuzz` runs millions), else the figure below.

// A test's unwrap is its assertion.
#![allow(clippy::unwrap_used)]

use ipfs_accelerate_common::cid::{self, Block, Cid};
use ipfs_accelerate_common::store::{AddOptions, Store, StoreOptions};
use ipfs_accelerate_common::unixfs::pb::{PbNode, UnixfsData};
use ipfs_accelerate_common::unixfs::{import, read_range, BlockSource, Profile};
use ipfs_accelerate_common::Error;
use proptest::prelude::*;
use prost::Message;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

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
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

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
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

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

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), ..ProptestConfig::default() })]

    /// `Retry-After`, HTTP dates and rate-limit resets from a hostile server: bounded waits
    /// or `None`, never a panic or an overflow (`1e20` and `u64::MAX` once were both).
    #[test]
    fn fuzz_wait_headers_are_bounded(
        text in prop_oneof![
            ".{0,40}",
            "[0-9]{1,30}(\\.[0-9]{0,10})?",
            "-?[0-9]\\.?[0-9]*[eE][+-]?[0-9]{1,4}",
            "(Mon|Sun), [0-9]{1,12} (Jan|Nov|Xyz) [0-9]{1,20} [0-9]{1,12}:[0-9]{1,3}:[0-9]{1,3} GMT",
        ],
        reset in any::<u64>(),
        now in any::<u64>(),
    ) {
        use ipfs_accelerate_common::http::{http_date, retry_after, until_unix, MAX_WAIT};
        if let Some(wait) = retry_after(&text) {
            prop_assert!(wait <= MAX_WAIT);
            // What callers do with it: add it to a clock.
            prop_assert!(std::time::Instant::now().checked_add(wait).is_some());
        }
        let _ = http_date(&text);
        prop_assert!(until_unix(reset, now) <= MAX_WAIT);
    }

    /// SSE/NDJSON framing: any bytes cut into any chunks give the lines of the whole, and no
    /// line past the cap is ever buffered.
    #[test]
    fn fuzz_line_framing_is_chunking_independent_and_capped(
        body in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        limit in 1usize..64,
    ) {
        use ipfs_accelerate_common::http::LineBuffer;
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        cuts.push(0);
        cuts.push(body.len());
        cuts.sort_unstable();
        let mut framer = LineBuffer::new(limit);
        let mut lines = Vec::new();
        let mut refused = false;
        for pair in cuts.windows(2) {
            match framer.push(&body[pair[0]..pair[1]]) {
                Ok(got) => lines.extend(got),
                Err(_) => { refused = true; break; }
            }
        }
        let whole: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let longest = whole.iter().map(|l| l.len()).max().unwrap_or(0);
        if refused {
            prop_assert!(longest > limit);
        } else {
            prop_assert!(longest <= limit);
            if let Some(tail) = framer.finish() { lines.push(tail); }
            let expected: Vec<Vec<u8>> = whole
                .iter()
                .enumerate()
                .filter(|(i, l)| *i + 1 < whole.len() || !l.is_empty())
                // A terminated line loses its `\r`; the unterminated tail is given as it came.
                .map(|(i, l)| if i + 1 < whole.len() { l.strip_suffix(b"\r").unwrap_or(l) } else { l }.to_vec())
                .collect();
            prop_assert_eq!(lines, expected);
        }
    }
}

/// Every client built by the shared recipe names us to the server.
#[test]
fn the_client_recipe_sends_our_user_agent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            socket.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&request[..n]).to_lowercase()
        });
        let client = ipfs_accelerate_common::http::client(std::time::Duration::from_secs(5))
            .build()
            .unwrap();
        let status = client.get(url).send().await.unwrap().status();
        assert_eq!(status, 204);
        let request = server.await.unwrap();
        let expected = format!("user-agent: ipfs-accelerate/{}", env!("CARGO_PKG_VERSION"));
        assert!(request.contains(&expected), "{request}");
    });
}
