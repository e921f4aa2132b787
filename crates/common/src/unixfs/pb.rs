//! dag-pb nodes and the UnixFS `Data` message, encoded byte-for-byte as Kubo does.
//!
//! dag-pb's canonical form puts `Links` (field 2) before `Data` (field 1), against protobuf's
//! usual field order, so nodes are encoded here with prost's primitives rather than a derived
//! `encode`; decoding accepts any field order through a derived message.

use cid::Cid;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use crate::cid::from_bytes;
use crate::{Error, Result};

/// A link from a dag-pb node to a child block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The child's CID.
    pub cid: Cid,
    /// The link name (empty for file chunks).
    pub name: String,
    /// Cumulative size: the child's encoded bytes plus everything it links to.
    pub tsize: u64,
}

/// A dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Links, in order.
    pub links: Vec<Link>,
    /// The opaque payload (a UnixFS `Data` message for UnixFS nodes).
    pub data: Option<Vec<u8>>,
}

impl PbNode {
    /// Encodes in dag-pb canonical form: links first, each with `Hash`, `Name`, `Tsize`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.links.len() * 48 + self.data.as_ref().map_or(0, Vec::len) + 8);
        for link in &self.links {
            let hash = link.cid.to_bytes();
            let name = link.name.as_bytes();
            let len = 1
                + encoded_len_varint(hash.len() as u64)
                + hash.len()
                + 1
                + encoded_len_varint(name.len() as u64)
                + name.len()
                + 1
                + encoded_len_varint(link.tsize);
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(len as u64, &mut out);
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(hash.len() as u64, &mut out);
            out.extend_from_slice(&hash);
            // Kubo always writes the name, even when empty.
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(name.len() as u64, &mut out);
            out.extend_from_slice(name);
            encode_key(3, WireType::Varint, &mut out);
            encode_varint(link.tsize, &mut out);
        }
        if let Some(data) = &self.data {
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(data.len() as u64, &mut out);
            out.extend_from_slice(data);
        }
        out
    }

    /// Decodes a dag-pb block; `cid` names the block in errors.
    pub fn decode(cid: &Cid, bytes: &[u8]) -> Result<PbNode> {
        let malformed = |reason: String| Error::MalformedBlock {
            cid: cid.to_string(),
            format: "dag-pb",
            reason,
        };
        let raw = RawNode::decode(bytes).map_err(|e| malformed(e.to_string()))?;
        let links = raw
            .links
            .into_iter()
            .enumerate()
            .map(|(i, link)| {
                let hash = link.hash.ok_or_else(|| malformed(format!("link {i} has no hash")))?;
                Ok(Link {
                    cid: from_bytes(&hash).map_err(|e| malformed(format!("link {i}: {e}")))?,
                    name: link.name.unwrap_or_default(),
                    tsize: link.tsize.unwrap_or(0),
                })
            })
            .collect::<Result<_>>()?;
        Ok(PbNode { links, data: raw.data })
    }
}

#[derive(Clone, PartialEq, Message)]
struct RawLink {
    #[prost(bytes = "vec", optional, tag = "1")]
    hash: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    name: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    tsize: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
struct RawNode {
    #[prost(bytes = "vec", optional, tag = "1")]
    data: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "2")]
    links: Vec<RawLink>,
}

/// UnixFS node types (the `Data.Type` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Raw bytes (legacy leaves).
    Raw = 0,
    /// A directory.
    Directory = 1,
    /// A file or file chunk.
    File = 2,
    /// Metadata.
    Metadata = 3,
    /// A symlink.
    Symlink = 4,
    /// A sharded directory.
    HamtShard = 5,
}

/// The UnixFS `Data` message (proto2; `blocksizes` unpacked as Kubo writes it).
#[derive(Clone, PartialEq, Message)]
pub struct UnixfsData {
    /// The node type, a [`DataType`] value.
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    /// File bytes held in this node (leaves).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    /// Bytes of file content under this node.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// Content bytes under each link, in link order.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
}

impl UnixfsData {
    /// A file node: `data` for a leaf's bytes, `blocksizes` for an interior node's children.
    pub fn file(data: Option<Vec<u8>>, filesize: u64, blocksizes: Vec<u64>) -> Self {
        UnixfsData { r#type: DataType::File as i32, data, filesize: Some(filesize), blocksizes }
    }

    /// Decodes the UnixFS payload of dag-pb block `cid`.
    pub fn decode_for(cid: &Cid, bytes: &[u8]) -> Result<UnixfsData> {
        UnixfsData::decode(bytes).map_err(|e| Error::MalformedBlock {
            cid: cid.to_string(),
            format: "UnixFS",
            reason: e.to_string(),
        })
    }
}

/// The CIDs a block links to: none for raw blocks, the links of a dag-pb node.
pub fn links(cid: &Cid, bytes: &[u8]) -> Result<Vec<Cid>> {
    if cid.codec() != crate::cid::DAG_PB {
        return Ok(Vec::new());
    }
    Ok(PbNode::decode(cid, bytes)?.links.into_iter().map(|l| l.cid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{cid_of, raw_cid, DAG_PB};

    #[test]
    fn kubo_empty_file_node_is_byte_exact() {
        // `ipfs add` of an empty file (CIDv0) is this node: Data = {Type: File, filesize: 0}.
        let data = UnixfsData::file(None, 0, vec![]).encode_to_vec();
        let node = PbNode { links: vec![], data: Some(data) }.encode();
        assert_eq!(node, [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]);
        let cid = cid_of(cid::Version::V0, DAG_PB, &node);
        assert_eq!(cid.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
    }

    #[test]
    fn decode_inverts_encode() {
        let node = PbNode {
            links: vec![Link { cid: raw_cid(b"a"), name: String::new(), tsize: 1 }],
            data: Some(UnixfsData::file(None, 1, vec![1]).encode_to_vec()),
        };
        let bytes = node.encode();
        let cid = cid_of(cid::Version::V1, DAG_PB, &bytes);
        assert_eq!(PbNode::decode(&cid, &bytes).unwrap(), node);
        assert!(matches!(
            PbNode::decode(&cid, &bytes[..bytes.len() - 3]),
            Err(Error::MalformedBlock { .. })
        ));
    }
}
