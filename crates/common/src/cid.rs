//! CIDs: parsing at the edge, hashing with sha2-256, and blocks that can only exist verified.
//!
//! Built on the `cid` and `multihash` crates; this module adds what they leave to the caller:
//! a strict parser with errors a person can act on (including the Python original's fake
//! `bafy<hex>` ids), and [`Block`], whose constructor is the hash check.

use std::fmt;

pub use cid::{Cid, Version};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Multicodec of raw binary blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb (UnixFS) blocks.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256, the only hash this store writes and accepts.
pub const SHA2_256: u64 = 0x12;

/// The multihash type used throughout (64-byte digest capacity, as the `cid` crate's default).
pub type Multihash = multihash::Multihash<64>;

/// Parses a CID string (CIDv0 `Qm…` or CIDv1 in any multibase) that this store can serve:
/// codec raw or dag-pb, hash sha2-256.
///
/// ```
/// use ipfs_accelerate_common::cid::parse;
/// let cid = parse("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")?;
/// assert_eq!(cid.codec(), ipfs_accelerate_common::cid::RAW);
/// assert!(parse("bafy2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362").is_err());
/// # Ok::<(), ipfs_accelerate_common::Error>(())
/// ```
pub fn parse(input: &str) -> Result<Cid> {
    let trimmed = input.trim();
    if is_legacy_fake_id(trimmed) {
        return Err(Error::LegacyFakeCid { input: trimmed.to_string() });
    }
    let cid = Cid::try_from(trimmed)
        .map_err(|e| Error::InvalidCid { input: trimmed.to_string(), reason: e.to_string() })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Parses the binary form of a CID (as found in dag-pb links and CAR files).
pub fn from_bytes(bytes: &[u8]) -> Result<Cid> {
    let cid = Cid::try_from(bytes).map_err(|e| Error::InvalidCid {
        input: format!("0x{}", hex(&bytes[..bytes.len().min(40)])),
        reason: e.to_string(),
    })?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Whether `input` is one of the Python original's fake ids: `bafy` + 56 hex digits. They are
/// not CIDs (hex digits 0, 1, 8, 9 are not base32) and name nothing in IPFS.
pub fn is_legacy_fake_id(input: &str) -> bool {
    input.len() == 60
        && input.starts_with("bafy")
        && input[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && Cid::try_from(input).is_err()
}

fn check_supported(cid: &Cid) -> Result<()> {
    if cid.codec() != RAW && cid.codec() != DAG_PB {
        return Err(Error::UnsupportedCid {
            cid: cid.to_string(),
            reason: format!(
                "codec 0x{:x} is not served by this store (only raw 0x55 and dag-pb 0x70)",
                cid.codec()
            ),
        });
    }
    if cid.hash().code() != SHA2_256 || cid.hash().size() != 32 {
        return Err(Error::UnsupportedCid {
            cid: cid.to_string(),
            reason: format!("hash 0x{:x} is not sha2-256", cid.hash().code()),
        });
    }
    Ok(())
}

/// The sha2-256 multihash of `data` (SHA-NI or AVX2 picked at run time by the `sha2` crate).
pub fn sha256(data: &[u8]) -> Multihash {
    let digest = Sha256::digest(data);
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::wrap(SHA2_256, &digest).unwrap_or_default()
}

/// The CID of `data` as one block of `codec`, in the `version` a profile uses.
///
/// CIDv0 exists only for dag-pb; asking for a v0 raw CID gives v1, as Kubo does.
pub fn cid_of(version: Version, codec: u64, data: &[u8]) -> Cid {
    let hash = sha256(data);
    match (version, codec) {
        (Version::V0, DAG_PB) => Cid::new_v0(hash).unwrap_or_else(|_| Cid::new_v1(codec, hash)),
        _ => Cid::new_v1(codec, hash),
    }
}

/// The CIDv1 (raw, sha2-256, base32 `bafkrei…`) of `data`: the Python original's CID for blobs,
/// and Kubo's for content of one chunk or less under raw-leaf profiles.
pub fn raw_cid(data: &[u8]) -> Cid {
    Cid::new_v1(RAW, sha256(data))
}

/// Whether `a` and `b` name the same block: same codec and multihash, whatever the CID
/// version or base (stores key blocks by multihash, and nodes answer a CIDv0 request with a
/// CIDv1, or the reverse).
pub fn same_block(a: &Cid, b: &Cid) -> bool {
    a.codec() == b.codec() && a.hash() == b.hash()
}

/// Whether `text` parses to a CID naming the same block as `cid` (see [`same_block`]).
pub fn names_block(text: &str, cid: &Cid) -> bool {
    Cid::try_from(text).is_ok_and(|c| same_block(&c, cid))
}

/// A block whose bytes are known to hash to its CID: the only way to make one is to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Vec<u8>,
}

impl Block {
    /// Checks `data` against `cid` and wraps them; a mismatch is [`Error::Corrupt`].
    pub fn verified(cid: Cid, data: Vec<u8>) -> Result<Block> {
        check_supported(&cid)?;
        let actual = sha256(&data);
        if actual != *cid.hash() {
            return Err(Error::Corrupt {
                cid: cid.to_string(),
                actual: Cid::new_v1(cid.codec(), actual).to_string(),
            });
        }
        Ok(Block { cid, data })
    }

    /// Hashes `data` to make its block (the CID is derived, so it cannot disagree).
    pub fn new(version: Version, codec: u64, data: Vec<u8>) -> Block {
        Block { cid: cid_of(version, codec, &data), data }
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The bytes, consuming the block.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("cid", &self.cid.to_string())
            .field("len", &self.data.len())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_raw_cids_match_the_python_original_and_kubo() {
        // Vectors from the reference (checked with hashlib + base32) and Kubo's fixtures.
        let cases: [(&[u8], &str); 3] = [
            (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
            (b"hello", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"),
            (b"hello world", "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
        ];
        for (data, expected) in cases {
            assert_eq!(raw_cid(data).to_string(), expected);
        }
    }

    #[test]
    fn parse_rejects_what_it_cannot_serve_with_specific_errors() {
        let fake = "bafy2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362";
        assert!(matches!(parse(fake), Err(Error::LegacyFakeCid { .. })));
        assert!(parse(fake).unwrap_err().to_string().contains("legacy non-CID id"));

        assert!(matches!(parse("not-a-cid"), Err(Error::InvalidCid { .. })));
        assert!(matches!(parse(""), Err(Error::InvalidCid { .. })));
        // dag-cbor (0x71) is a valid CID this store does not serve.
        let cbor = Cid::new_v1(0x71, sha256(b"x")).to_string();
        assert!(matches!(parse(&cbor), Err(Error::UnsupportedCid { .. })));

        let v0 = parse("Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD").unwrap();
        assert_eq!(v0.version(), Version::V0);
        assert_eq!(
            parse(" bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e\n")
                .unwrap()
                .codec(),
            RAW
        );
    }

    #[test]
    fn a_block_is_verified_on_construction() {
        let cid = raw_cid(b"hello");
        assert!(Block::verified(cid, b"hello".to_vec()).is_ok());
        let err = Block::verified(cid, b"hellO".to_vec()).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { cid: c, .. } if *c == cid.to_string()), "{err}");
    }
}
