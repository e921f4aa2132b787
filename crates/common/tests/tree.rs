//! Directory trees in the store: `add_tree` as `ipfs add -r` builds them, listing, path
//! lookups, atomic commit, and bad input that stores nothing.

// A test's unwrap is its assertion; tests write their input files directly.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use ipfs_accelerate_common::cid::DAG_PB;
use ipfs_accelerate_common::store::{AddInput, AddOptions, Name, Store, StoreOptions, TreeEntry};
use ipfs_accelerate_common::unixfs::dir::DirEntry;
use ipfs_accelerate_common::unixfs::Profile;
use ipfs_accelerate_common::Error;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn bytes(path: &str, data: &[u8]) -> TreeEntry {
    TreeEntry { path: path.into(), input: AddInput::Bytes(data.to_vec()) }
}

#[test]
fn nested_tree_lists_resolves_and_survives_gc() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let big = vec![7u8; 3 << 20];
        let file = dir.path().join("weights.bin");
        std::fs::write(&file, &big).unwrap();
        let entries = vec![
            bytes("config.json", b"{}"),
            TreeEntry { path: "weights.bin".into(), input: AddInput::Path(file) },
            bytes("1_Pooling/config.json", b"{\"pooling\": true}"),
        ];
        let name: Name = "models/tree".parse().unwrap();
        let options = AddOptions { pin: true, name: Some(name.clone()), ..AddOptions::default() };
        let added = store.add_tree(entries, options).await.unwrap();
        assert_eq!(added.root.codec(), DAG_PB);
        assert_eq!(added.files.len(), 3);

        let listing = store.list_directory(&added.root).await.unwrap();
        let names: Vec<&str> = listing.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["1_Pooling", "config.json", "weights.bin"]);
        let weights: &DirEntry = &listing[2];
        // A 3 MiB file is three 1 MiB raw leaves under one node: Tsize counts them all.
        assert!(weights.tsize > 3 << 20, "{}", weights.tsize);

        let nested = store.resolve_path(&added.root, "1_Pooling/config.json").await.unwrap();
        assert_eq!(store.cat_bytes(&nested).await.unwrap(), b"{\"pooling\": true}");
        let missing = store.resolve_path(&added.root, "1_Pooling/nope").await.unwrap_err();
        assert!(matches!(missing, Error::NoSuchPath { .. }), "{missing}");
        let through_file = store.resolve_path(&added.root, "config.json/x").await.unwrap_err();
        assert!(matches!(through_file, Error::NotADirectory { .. }), "{through_file}");

        store.gc().await.unwrap();
        let weights_cid = store.resolve_path(&added.root, "weights.bin").await.unwrap();
        assert_eq!(store.cat_bytes(&weights_cid).await.unwrap(), big);
        assert_eq!(store.name_get(&name).await.unwrap().cid, added.root.to_string());

        // The same tree again writes nothing new and has the same CID.
        let again = vec![
            bytes("config.json", b"{}"),
            bytes("weights.bin", &big),
            bytes("1_Pooling/config.json", b"{\"pooling\": true}"),
        ];
        let second = store.add_tree(again, AddOptions::default()).await.unwrap();
        assert_eq!(second.root, added.root);
        assert_eq!(second.bytes_new, 0);
    });
}

#[test]
fn legacy_profile_gives_a_cidv0_directory() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let options = AddOptions { profile: Profile::UnixfsV0_2015, ..AddOptions::default() };
        let added = store.add_tree(Vec::new(), options).await.unwrap();
        assert_eq!(added.root.to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
    });
}

#[test]
fn bad_trees_store_nothing() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let cases = [
            vec![bytes("a", b"1"), bytes("a", b"2")],
            vec![bytes("a", b"1"), bytes("a/b", b"2")],
            vec![bytes("../escape", b"1")],
            vec![bytes("/abs", b"1")],
            vec![bytes("a//b", b"1")],
        ];
        for entries in cases {
            let err = store.add_tree(entries, AddOptions::default()).await.unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{err}");
        }
        // A file that cannot be read fails the whole tree; what was written is garbage.
        let entries = vec![
            bytes("first", b"written before the failure"),
            TreeEntry { path: "second".into(), input: AddInput::Path(dir.path().join("absent")) },
        ];
        let err = store
            .add_tree(entries, AddOptions { pin: true, ..AddOptions::default() })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(store.pins().await.unwrap().is_empty());
        store.gc().await.unwrap();
        assert_eq!(store.status().await.unwrap().usage.blocks, 0);
    });
}

#[test]
fn an_index_lists_the_files_it_is_committed_with() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).await.unwrap();
        let added = store
            .add_tree_indexed(
                vec![bytes("a.txt", b"alpha"), bytes("b/c.txt", b"gamma")],
                |files| {
                    let listing: Vec<String> =
                        files.iter().map(|f| format!("{} {}", f.path, f.cid)).collect();
                    Ok(vec![bytes("index.txt", listing.join("\n").as_bytes())])
                },
                AddOptions { pin: true, ..AddOptions::default() },
            )
            .await
            .unwrap();
        let index = store.resolve_path(&added.root, "index.txt").await.unwrap();
        let text = String::from_utf8(store.cat_bytes(&index).await.unwrap()).unwrap();
        let a = store.resolve_path(&added.root, "a.txt").await.unwrap();
        assert!(text.contains(&format!("a.txt {a}")), "{text}");
        assert_eq!(added.files.last().unwrap().path, "index.txt");
    });
}
