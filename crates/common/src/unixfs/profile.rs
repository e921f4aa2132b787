use std::fmt;
use std::str::FromStr;

use cid::Version;

/// A UnixFS import profile: the parameters that, with the bytes, decide the root CID.
///
/// The same bytes under the same profile give the same CID as Kubo's `ipfs add` with that
/// profile (known answers in `shared/fixtures/kubo-cids.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Kubo's `unixfs-v1-2025`: CIDv1, raw leaves, 1 MiB chunks, 1024 links per node. The
    /// default for new content.
    #[default]
    UnixfsV1_2025,
    /// Kubo's `unixfs-v0-2015` (alias `legacy-cid-v0`, Kubo's historical default): CIDv0,
    /// dag-pb leaves, 256 KiB chunks, 174 links per node.
    UnixfsV0_2015,
    /// `ipfs add --cid-version=1` on Kubo's classic settings: CIDv1, raw leaves, 256 KiB chunks,
    /// 174 links per node.
    KuboCidV1,
}

impl Profile {
    /// Every profile, in the order `--help` lists them.
    pub const ALL: [Profile; 3] =
        [Profile::UnixfsV1_2025, Profile::UnixfsV0_2015, Profile::KuboCidV1];

    /// The canonical name, as Kubo spells it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::UnixfsV1_2025 => "unixfs-v1-2025",
            Profile::UnixfsV0_2015 => "unixfs-v0-2015",
            Profile::KuboCidV1 => "kubo-cidv1",
        }
    }

    /// The CID version of every block this profile produces.
    pub fn cid_version(self) -> Version {
        match self {
            Profile::UnixfsV0_2015 => Version::V0,
            Profile::UnixfsV1_2025 | Profile::KuboCidV1 => Version::V1,
        }
    }

    /// Whether leaves are raw blocks (codec `raw`) rather than dag-pb UnixFS nodes.
    pub fn raw_leaves(self) -> bool {
        !matches!(self, Profile::UnixfsV0_2015)
    }

    /// Bytes per leaf chunk.
    pub fn chunk_size(self) -> usize {
        match self {
            Profile::UnixfsV1_2025 => 1024 * 1024,
            Profile::UnixfsV0_2015 | Profile::KuboCidV1 => 256 * 1024,
        }
    }

    /// Maximum links per interior node of the balanced DAG.
    pub fn max_links(self) -> usize {
        match self {
            Profile::UnixfsV1_2025 => 1024,
            Profile::UnixfsV0_2015 | Profile::KuboCidV1 => 174,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a profile name that is not one of [`Profile::ALL`] (or an alias).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}: expected unixfs-v1-2025, unixfs-v0-2015 (alias legacy-cid-v0) or kubo-cidv1")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unixfs-v1-2025" => Ok(Profile::UnixfsV1_2025),
            "unixfs-v0-2015" | "legacy-cid-v0" => Ok(Profile::UnixfsV0_2015),
            "kubo-cidv1" => Ok(Profile::KuboCidV1),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_alias_parses() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert_eq!("legacy-cid-v0".parse::<Profile>(), Ok(Profile::UnixfsV0_2015));
        assert!("unixfs-v2".parse::<Profile>().is_err());
    }
}
