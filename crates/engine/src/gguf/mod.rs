//! A reader for GGUF model files: the metadata, the tensor directory, and the tensor data,
//! memory-mapped. Every length and offset is checked against the file, so a truncated or
//! corrupt file is an error that says what is wrong and at which byte, never a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use temper_kernels::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// What is wrong with a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read the file")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (the first bytes are {0:?}, not \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (only versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("the file is truncated: {what} at byte {offset} needs {needed} bytes but the file has {len}")]
    Truncated { what: String, offset: usize, needed: u64, len: usize },
    #[error("{what} at byte {offset} is invalid: {reason}")]
    Invalid { what: String, offset: usize, reason: String },
    #[error("tensor `{name}` has ggml type {id}, which Temper does not support")]
    UnsupportedType { name: String, id: u32 },
    #[error("metadata key `{key}` is missing")]
    MissingKey { key: String },
    #[error("metadata key `{key}` is {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "a string",
            MetaValue::Array(_) => "an array",
        }
    }

    /// The value as an unsigned integer, whatever its integer width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(values) => Some(values),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the length of a row.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }
}

/// An open GGUF file.
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    data_start: usize,
    bytes: Bytes,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Opens and checks a GGUF file, memory-mapping its tensor data.
    pub fn open(path: &Path) -> Result<Gguf, GgufError> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only; a file changed under us while mapped can give wrong
        // numbers but every offset we read through is bounds-checked against the map's length.
        let map = unsafe { Mmap::map(&file)? };
        Self::parse(Bytes::Mapped(map))
    }

    /// Reads a GGUF file held in memory (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Gguf, GgufError> {
        let mut r = Reader { bytes: &bytes, pos: 0 };
        let magic: [u8; 4] = r.take(4, "the magic number")?.try_into().unwrap_or_default();
        if &magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = r.u64("the tensor count")?;
        let kv_count = r.u64("the metadata count")?;

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let start = r.pos;
            let key = r.string("a metadata key")?;
            let value_type = r.u32("a metadata value type")?;
            let value = r.value(value_type, &key)?;
            if metadata.contains_key(&key) {
                return Err(GgufError::Invalid {
                    what: format!("metadata key `{key}`"),
                    offset: start,
                    reason: "appears twice".into(),
                });
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => return Err(r.invalid("general.alignment", "must be a power of two")),
            },
        };

        let mut tensors = Vec::new();
        let mut by_name = BTreeMap::new();
        for _ in 0..tensor_count {
            let start = r.pos;
            let name = r.string("a tensor name")?;
            let n_dims = r.u32("a tensor's dimension count")?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.invalid(&format!("tensor `{name}`"), &format!("has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("a tensor dimension")?);
            }
            let type_id = r.u32("a tensor type")?;
            let ty = GgmlType::from_id(type_id)
                .ok_or_else(|| GgufError::UnsupportedType { name: name.clone(), id: type_id })?;
            let offset = r.u64("a tensor offset")?;
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let size = elements.and_then(|n| ty.bytes_for(n)).ok_or_else(|| GgufError::Invalid {
                what: format!("tensor `{name}`"),
                offset: start,
                reason: format!(
                    "dimensions {dims:?} do not fit type {ty} (row length must be a multiple of {})",
                    ty.block_len()
                ),
            })?;
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(GgufError::Invalid {
                    what: format!("tensor `{name}`"),
                    offset: start,
                    reason: format!(
                        "row length {} is not a multiple of {ty}'s block of {}",
                        dims[0],
                        ty.block_len()
                    ),
                });
            }
            if offset % alignment != 0 {
                return Err(GgufError::Invalid {
                    what: format!("tensor `{name}`"),
                    offset: start,
                    reason: format!("data offset {offset} is not aligned to {alignment}"),
                });
            }
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Invalid {
                    what: format!("tensor `{name}`"),
                    offset: start,
                    reason: "appears twice".into(),
                });
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }

        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        check_layout(&tensors, data_start, alignment, bytes.len())?;
        let data_start = data_start as usize;
        Ok(Gguf { version, metadata, tensors, by_name, data_start, bytes })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor (bounds were checked when the file was opened).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset as usize;
        &self.bytes[start..start + info.size as usize]
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { key: key.into() })
    }

    fn wrong(&self, key: &str, expected: &'static str, value: &MetaValue) -> GgufError {
        GgufError::WrongType { key: key.into(), expected, found: value.type_name() }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| self.wrong(key, "an unsigned integer", v))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "a bool", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[MetaValue], GgufError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| self.wrong(key, "an array", v))
    }

    /// The model architecture (`general.architecture`), e.g. `llama` or `gemma3`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }
}

/// Checks that, in offset order, each tensor's data starts where the one before ends (rounded
/// up to the alignment), as llama.cpp writes and requires, and that all of it lies inside the
/// file. A tensor whose type or shape does not match its data then shows as an overlap, which
/// would read its neighbour's bytes as weights, or as a gap.
fn check_layout(
    tensors: &[TensorInfo],
    data_start: u64,
    alignment: u64,
    len: usize,
) -> Result<(), GgufError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    let at = |offset: u64| data_start.saturating_add(offset).min(usize::MAX as u64) as usize;
    let misplaced = |t: &TensorInfo, reason: String| GgufError::Invalid {
        what: format!("tensor `{}`", t.name),
        offset: at(t.offset),
        reason: format!("{reason}: the type or shape does not match the data"),
    };
    let describe = |t: &TensorInfo| format!("{} {:?}, {} bytes", t.ty, t.dims, t.size);
    for pair in by_offset.windows(2) {
        let (p, t) = (pair[0], pair[1]);
        let next_start = p.offset.saturating_add(p.size).div_ceil(alignment).saturating_mul(alignment);
        if t.offset < next_start {
            let into = t.offset - p.offset;
            let reason = format!(
                "its data ({}) runs into tensor `{}`, which starts {into} bytes into it",
                describe(p),
                t.name
            );
            return Err(misplaced(p, reason));
        }
        if t.offset > next_start {
            let unused = t.offset - next_start;
            let reason = format!(
                "its data ({}) is followed by {unused} unused bytes before tensor `{}`",
                describe(p),
                t.name
            );
            return Err(misplaced(p, reason));
        }
    }
    if let Some(first) = by_offset.first().filter(|t| t.offset > 0) {
        let reason = format!(
            "it is the first tensor but its data starts {} bytes into the data section",
            first.offset
        );
        return Err(misplaced(first, reason));
    }
    for t in by_offset {
        let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.size));
        if end.is_none_or(|end| end > len as u64) {
            return Err(GgufError::Truncated {
                what: format!("the data of tensor `{}`", t.name),
                offset: at(t.offset),
                needed: t.size,
                len,
            });
        }
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining as u64 {
            return Err(GgufError::Truncated {
                what: what.into(),
                offset: self.pos,
                needed: n,
                len: self.bytes.len(),
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(slice)
    }

    fn invalid(&self, what: &str, reason: &str) -> GgufError {
        GgufError::Invalid { what: what.into(), offset: self.pos, reason: reason.into() }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| GgufError::Invalid {
            what: what.into(),
            offset: start,
            reason: format!("not valid UTF-8 ({e})"),
        })
    }

    fn value(&mut self, value_type: u32, key: &str) -> Result<MetaValue, GgufError> {
        let what = format!("the value of `{key}`");
        Ok(match value_type {
            0 => MetaValue::U8(self.array::<1>(&what)?[0]),
            1 => MetaValue::I8(self.array::<1>(&what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => match self.array::<1>(&what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.invalid(&what, &format!("bool byte {b} is neither 0 nor 1"))),
            },
            8 => MetaValue::String(self.string(&what)?),
            9 => {
                let item_type = self.u32(&what)?;
                let count = self.u64(&what)?;
                if item_type == 9 {
                    return Err(self.invalid(&what, "nested arrays are not supported"));
                }
                // Every item takes at least one byte: a count beyond the bytes left is corrupt,
                // and checking it first keeps a bad count from reserving huge memory.
                let remaining = (self.bytes.len() - self.pos) as u64;
                if count > remaining {
                    return Err(GgufError::Truncated {
                        what,
                        offset: self.pos,
                        needed: count,
                        len: self.bytes.len(),
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_type, key)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            t => return Err(self.invalid(&what, &format!("unknown value type {t}"))),
        })
    }
}

mod writer;
pub use writer::GgufWriter;

#[cfg(test)]
mod tests;
