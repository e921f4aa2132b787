//! CTranslate2's `model.bin`: the format faster-whisper models ship in, read without the CT2
//! runtime.
//!
//! Layout (version 6, little-endian; the writer is `ModelSpec._serialize` in the `ctranslate2`
//! wheel, the reader `Model::load` in CT2's C++): `u32 version`, `string spec_name`,
//! `u32 spec_revision`, `u32 n`, then `n` variables (`string name`, `u8 rank`,
//! `u32 dims[rank]`, `u8 dtype`, `u32 bytes`, data), then `u32 n_aliases` and `n` pairs of
//! strings (a variable equal to an earlier one is stored once, under the earlier name). A
//! string is `u16 len` counting its NUL, the bytes, then the NUL.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The newest `model.bin` version this reader knows (CT2 4.x writes 6).
pub const MAX_VERSION: u32 = 6;

/// A tensor's element type, by CT2's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 0
    F32,
    /// 1
    I8,
    /// 2
    I16,
    /// 3
    I32,
    /// 4
    F16,
    /// 5
    Bf16,
}

impl DType {
    fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    /// Its name in messages and manifests.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::F16 => "F16",
            DType::Bf16 => "BF16",
        }
    }
}

/// One variable of a model: a tensor, or a scalar setting such as `encoder/num_heads`.
#[derive(Debug, Clone, Copy)]
pub struct Variable<'a> {
    /// Dimensions as stored (`u32` each, row-major; empty for a scalar): see `shape`.
    dims: &'a [u8],
    rank: usize,
    /// Element type.
    pub dtype: DType,
    /// The raw little-endian data.
    pub data: &'a [u8],
}

impl Variable<'_> {
    /// The dimensions.
    pub fn shape(&self) -> Vec<usize> {
        (0..self.rank)
            .map(|i| {
                let b = &self.dims[i * 4..i * 4 + 4];
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            })
            .collect()
    }

    /// Element count.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A scalar integer setting, whatever its integer type.
    pub fn as_int(&self) -> Option<i64> {
        if self.rank != 0 {
            return None;
        }
        let d = self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(*d.first()? as i8),
            DType::I16 => i64::from(i16::from_le_bytes([*d.first()?, *d.get(1)?])),
            DType::I32 => i64::from(i32::from_le_bytes(d.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    }
}

/// A parsed `model.bin`, borrowing the file's bytes.
#[derive(Debug)]
pub struct Model<'a> {
    /// The format version.
    pub version: u32,
    /// The spec that wrote it (`WhisperSpec`).
    pub spec: String,
    /// The spec's revision.
    pub revision: u32,
    variables: BTreeMap<String, Variable<'a>>,
    aliases: BTreeMap<String, String>,
}

impl<'a> Model<'a> {
    /// Parses `bytes` (file `file`, for messages). Every length is checked against what is
    /// left, so a truncated or foreign file is an error naming where it broke, never a panic.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Model<'a>> {
        let mut r = Reader { file, bytes, pos: 0 };
        let version = r.u32("version")?;
        if version == 0 || version > MAX_VERSION {
            return Err(Error::invalid_file(
                file,
                format!("not a CTranslate2 model.bin this reader knows (version {version}; 1..={MAX_VERSION} supported)"),
            ));
        }
        if version < 4 {
            return Err(Error::invalid_file(
                file,
                format!("CTranslate2 model.bin version {version} predates typed variables (4); re-convert it with a current ct2-transformers-converter"),
            ));
        }
        let spec = r.string("spec name")?;
        let revision = r.u32("spec revision")?;
        let count = r.u32("variable count")? as usize;
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let name = r.string("variable name")?;
            let rank = r.u8(&name)? as usize;
            let dims = r.take(rank * 4, &name)?;
            let id = r.u8(&name)?;
            let dtype = DType::from_id(id).ok_or_else(|| {
                Error::invalid_file(file, format!("variable {name}: unknown dtype id {id}"))
            })?;
            let size = r.u32(&name)? as usize;
            let data = r.take(size, &name)?;
            let variable = Variable { dims, rank, dtype, data };
            let elements: usize = variable.shape().iter().product();
            if elements.checked_mul(dtype.size()) != Some(size) {
                return Err(Error::invalid_file(
                    file,
                    format!(
                        "variable {name}: {size} bytes for shape {:?} of {}",
                        variable.shape(),
                        dtype.name()
                    ),
                ));
            }
            variables.insert(name, variable);
        }
        let mut aliases = BTreeMap::new();
        if version >= 3 {
            let count = r.u32("alias count")? as usize;
            for _ in 0..count {
                let alias = r.string("alias")?;
                let target = r.string("alias target")?;
                aliases.insert(alias, target);
            }
        }
        if r.pos != bytes.len() {
            return Err(Error::invalid_file(
                file,
                format!(
                    "{} bytes after the last alias: not one CTranslate2 model",
                    bytes.len() - r.pos
                ),
            ));
        }
        Ok(Model { version, spec, revision, variables, aliases })
    }

    /// Variable `name`, following an alias.
    pub fn get(&self, name: &str) -> Option<&Variable<'a>> {
        self.variables.get(name).or_else(|| self.variables.get(self.aliases.get(name)?))
    }

    /// Variable `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&Variable<'a>> {
        self.get(name).ok_or_else(|| {
            Error::invalid_file("model.bin", format!("no variable {name} (spec {})", self.spec))
        })
    }

    /// Every variable by name (aliases not included).
    pub fn variables(&self) -> impl Iterator<Item = (&str, &Variable<'a>)> {
        self.variables.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Elements in tensors (scalars and aliases not counted).
    pub fn parameters(&self) -> u64 {
        self.variables.values().filter(|v| v.rank > 0).map(|v| v.len() as u64).sum()
    }

    /// The element type most tensor bytes have.
    pub fn dominant_dtype(&self) -> Option<DType> {
        let mut bytes: BTreeMap<&'static str, (usize, DType)> = BTreeMap::new();
        for v in self.variables.values().filter(|v| v.rank > 0) {
            bytes.entry(v.dtype.name()).or_insert((0, v.dtype)).0 += v.data.len();
        }
        bytes.into_values().max_by_key(|(n, _)| *n).map(|(_, d)| d)
    }
}

struct Reader<'a, 'f> {
    file: &'f str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end =
            self.pos.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
                Error::invalid_file(
                    self.file,
                    format!(
                        "truncated at byte {} reading {what} ({n} bytes wanted, {} left)",
                        self.pos,
                        self.bytes.len() - self.pos
                    ),
                )
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let b = self.take(2, what)?;
        let len = u16::from_le_bytes([b[0], b[1]]) as usize;
        let raw = self.take(len, what)?;
        match raw.split_last() {
            Some((0, text)) => String::from_utf8(text.to_vec())
                .map_err(|_| Error::invalid_file(self.file, format!("{what} is not UTF-8"))),
            _ => Err(Error::invalid_file(
                self.file,
                format!("{what} at byte {} is not a NUL-terminated string", self.pos - len),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `model.bin` with the given variables (name, shape, dtype id, data) and aliases.
    pub(crate) fn write(
        spec: &str,
        vars: &[(&str, &[u32], u8, Vec<u8>)],
        aliases: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in vars {
            string(&mut out, name);
            out.push(dims.len() as u8);
            for d in *dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let bytes = write(
            "WhisperSpec",
            &[
                ("a/weight", &[2, 3], 0, vec![0; 24]),
                ("a/heads", &[], 2, 8i16.to_le_bytes().to_vec()),
            ],
            &[("b/weight", "a/weight")],
        );
        let model = Model::parse("model.bin", &bytes).expect("parses");
        assert_eq!(model.spec, "WhisperSpec");
        assert_eq!(model.require("b/weight").expect("alias").shape(), vec![2, 3]);
        assert_eq!(model.require("a/heads").expect("scalar").as_int(), Some(8));
        assert_eq!(model.parameters(), 6);
        assert_eq!(model.dominant_dtype(), Some(DType::F32));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write("WhisperSpec", &[("w", &[4], 4, vec![1; 8])], &[]);
        for cut in 0..bytes.len() {
            let err = Model::parse("model.bin", &bytes[..cut]).expect_err("truncated");
            assert!(err.to_string().contains("model.bin"), "{err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Model::parse("model.bin", &longer).is_err());
    }

    #[test]
    fn a_size_that_disagrees_with_the_shape_is_an_error() {
        let bytes = write("WhisperSpec", &[("w", &[4], 4, vec![1; 6])], &[]);
        let err = Model::parse("model.bin", &bytes).expect_err("bad size").to_string();
        assert!(err.contains("6 bytes for shape [4]"), "{err}");
    }
}
