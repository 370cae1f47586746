//! A reader of CTranslate2's `model.bin` (the format faster-whisper models ship in).
//!
//! The layout, all little-endian (`ModelSpec._serialize` in CTranslate2's `model_spec.py`):
//! `u32` binary version, string spec name, `u32` spec revision, `u32` variable count, then per
//! variable a string name, `u8` rank, `u32` dims, `u8` dtype id, `u32` byte count and the bytes;
//! then `u32` alias count and alias/target string pairs. A string is a `u16` length that counts
//! a closing NUL, then the bytes and the NUL.
//!
//! The file may come from anywhere, so every length is checked before it is used: no read
//! past the end, no allocation sized by an unchecked header field, no panic on any bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ConvertError;

/// The binary versions whose layout this reader knows (4 introduced dtype ids; 6 is current).
const BINARY_VERSIONS: std::ops::RangeInclusive<u32> = 4..=6;
/// No CTranslate2 model has tensors of more dimensions; a larger rank is a damaged header.
const MAX_RANK: u8 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    /// CTranslate2's `DataType` ids.
    fn from_id(id: u8) -> Option<Dtype> {
        Some(match id {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        }
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }
}

/// One stored variable: where its bytes are, never the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variable {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    offset: u64,
    n_bytes: usize,
}

/// An opened `model.bin`: its header parsed and checked, the tensor data read on demand.
pub(crate) struct Ct2File {
    path: PathBuf,
    file: File,
    pub spec: String,
    pub revision: u32,
    variables: BTreeMap<String, Variable>,
    /// Alias name to the variable it stands for (chains already followed).
    aliases: BTreeMap<String, String>,
}

impl Ct2File {
    pub(crate) fn open(path: &Path) -> Result<Ct2File, ConvertError> {
        let file = File::open(path).map_err(|e| ConvertError::io("opening", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| ConvertError::io("reading", path, e))?
            .len();
        let mut header = Header {
            reader: BufReader::new(&file),
            pos: 0,
            len,
        };
        let parsed = header.parse();
        let (spec, revision, variables, aliases) =
            parsed.map_err(|why| ConvertError::Ct2(format!("{}: {why}", path.display())))?;
        Ok(Ct2File {
            path: path.to_path_buf(),
            file,
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// The variable a name (or an alias) stands for.
    pub(crate) fn get(&self, name: &str) -> Option<&Variable> {
        let target = self.aliases.get(name).map_or(name, String::as_str);
        self.variables.get(target)
    }

    pub(crate) fn is_alias(&self, name: &str) -> bool {
        self.aliases.contains_key(name)
    }

    /// Stored variable names (aliases excluded), in file order (sorted).
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// A variable's bytes (row-major, little-endian).
    pub(crate) fn read(&self, var: &Variable) -> Result<Vec<u8>, ConvertError> {
        let mut data = vec![0u8; var.n_bytes];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(var.offset))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| ConvertError::io("reading", &self.path, e))?;
        Ok(data)
    }

    /// A rank-0 integer variable (CTranslate2 stores model options this way).
    pub(crate) fn scalar(&self, name: &str) -> Result<i64, ConvertError> {
        let var = self
            .get(name)
            .ok_or_else(|| ConvertError::Ct2(format!("the model has no '{name}'")))?;
        if !var.shape.is_empty() {
            return Err(ConvertError::Ct2(format!(
                "'{name}' should be a scalar, not of shape {:?}",
                var.shape
            )));
        }
        let b = self.read(var)?;
        let value = match var.dtype {
            Dtype::I8 => i64::from(b[0] as i8),
            Dtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F32 => {
                let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(ConvertError::Ct2(format!(
                        "'{name}' should be a whole number, not {f}"
                    )));
                }
                f as i64
            }
            Dtype::F16 | Dtype::Bf16 => {
                return Err(ConvertError::Ct2(format!(
                    "'{name}' should be an integer scalar, not {}",
                    var.dtype.name()
                )))
            }
        };
        Ok(value)
    }
}

type Parsed = (
    String,
    u32,
    BTreeMap<String, Variable>,
    BTreeMap<String, String>,
);

/// A bounds-checked cursor over the file's header.
struct Header<R> {
    reader: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Header<R> {
    fn parse(&mut self) -> Result<Parsed, String> {
        let binary_version = self.u32("the binary version")?;
        if !BINARY_VERSIONS.contains(&binary_version) {
            return Err(format!(
                "binary version {binary_version} is not one this reader knows ({}..={}): not a \
                 CTranslate2 model, or one from another CTranslate2 version",
                BINARY_VERSIONS.start(),
                BINARY_VERSIONS.end()
            ));
        }
        let spec = self.string("the spec name")?;
        let revision = self.u32("the spec revision")?;
        let count = self.u32("the variable count")?;
        let mut variables = BTreeMap::new();
        for index in 0..count {
            let var = self
                .variable()
                .map_err(|why| format!("variable {} of {count}: {why}", index + 1))?;
            if let Some(old) = variables.insert(var.name.clone(), var) {
                return Err(format!("the variable '{}' appears twice", old.name));
            }
        }
        let alias_count = self.u32("the alias count")?;
        let mut raw_aliases = BTreeMap::new();
        for index in 0..alias_count {
            let what = format!("alias {} of {alias_count}", index + 1);
            let alias = self.string(&what)?;
            let target = self.string(&what)?;
            if variables.contains_key(&alias) || raw_aliases.contains_key(&alias) {
                return Err(format!("the alias '{alias}' names a variable twice"));
            }
            raw_aliases.insert(alias, target);
        }
        if self.pos != self.len {
            return Err(format!(
                "{} bytes follow the last alias (a damaged or wrongly joined file)",
                self.len - self.pos
            ));
        }
        let aliases = resolve_aliases(&raw_aliases, &variables)?;
        Ok((spec, revision, variables, aliases))
    }

    fn variable(&mut self) -> Result<Variable, String> {
        let name = self.string("the name")?;
        let rank = self.u8(&name)?;
        if rank > MAX_RANK {
            return Err(format!("'{name}' has rank {rank} (at most {MAX_RANK})"));
        }
        let mut shape = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            shape.push(self.u32(&name)? as usize);
        }
        let id = self.u8(&name)?;
        let dtype = Dtype::from_id(id).ok_or_else(|| format!("'{name}' has dtype id {id}"))?;
        let n_bytes = self.u32(&name)? as usize;
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("'{name}': the size of shape {shape:?} overflows"))?;
        if expected != n_bytes {
            return Err(format!(
                "'{name}': shape {shape:?} of {} needs {expected} bytes, the header says {n_bytes}",
                dtype.name()
            ));
        }
        let offset = self.pos;
        self.skip(n_bytes as u64, &name)?;
        Ok(Variable {
            name,
            dtype,
            shape,
            offset,
            n_bytes,
        })
    }

    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        if self.len - self.pos < N as u64 {
            return Err(format!("the file ends inside {what}"));
        }
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| format!("reading {what}: {e}"))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if self.len - self.pos < n {
            return Err(format!(
                "the data of '{what}' ({n} bytes) runs past the end of the file"
            ));
        }
        let step = i64::try_from(n).map_err(|_| format!("'{what}' is too large"))?;
        self.reader
            .seek_relative(step)
            .map_err(|e| format!("skipping {what}: {e}"))?;
        self.pos += n;
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = u16::from_le_bytes(self.take(what)?) as usize;
        if n == 0 {
            return Err(format!("{what}: a string of length 0 (the NUL is counted)"));
        }
        if self.len - self.pos < n as u64 {
            return Err(format!("the file ends inside {what}"));
        }
        let mut bytes = vec![0u8; n];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| format!("reading {what}: {e}"))?;
        self.pos += n as u64;
        if bytes.pop() != Some(0) || bytes.contains(&0) {
            return Err(format!("{what}: a string not ended by its one NUL"));
        }
        String::from_utf8(bytes).map_err(|_| format!("{what}: a string that is not UTF-8"))
    }
}

/// Follows each alias to a stored variable (an alias of an alias is allowed; a loop or a
/// missing target is not).
fn resolve_aliases(
    raw: &BTreeMap<String, String>,
    variables: &BTreeMap<String, Variable>,
) -> Result<BTreeMap<String, String>, String> {
    let mut resolved = BTreeMap::new();
    for alias in raw.keys() {
        let mut target = alias;
        for _ in 0..=raw.len() {
            match raw.get(target) {
                Some(next) => target = next,
                None => break,
            }
        }
        if !variables.contains_key(target) {
            return Err(if raw.contains_key(target) {
                format!("the alias '{alias}' is part of a loop")
            } else {
                format!("the alias '{alias}' points to '{target}', which is not stored")
            });
        }
        resolved.insert(alias.clone(), target.clone());
    }
    Ok(resolved)
}

/// A `model.bin` writer mirroring `_serialize`, for tests (here and in `whisper.rs`).
#[cfg(test)]
pub(crate) mod writer {
    pub(crate) struct Writer {
        pub bytes: Vec<u8>,
    }

    impl Writer {
        pub(crate) fn new(spec: &str, revision: u32, n_variables: u32) -> Writer {
            let mut w = Writer { bytes: Vec::new() };
            w.u32(6);
            w.string(spec);
            w.u32(revision);
            w.u32(n_variables);
            w
        }

        pub(crate) fn u32(&mut self, v: u32) {
            self.bytes.extend(v.to_le_bytes());
        }

        pub(crate) fn string(&mut self, s: &str) {
            self.bytes
                .extend(u16::try_from(s.len() + 1).unwrap().to_le_bytes());
            self.bytes.extend(s.as_bytes());
            self.bytes.push(0);
        }

        pub(crate) fn variable(&mut self, name: &str, shape: &[u32], dtype_id: u8, data: &[u8]) {
            self.string(name);
            self.bytes.push(shape.len() as u8);
            shape.iter().for_each(|d| self.u32(*d));
            self.bytes.push(dtype_id);
            self.u32(data.len() as u32);
            self.bytes.extend(data);
        }

        pub(crate) fn aliases(&mut self, pairs: &[(&str, &str)]) {
            self.u32(pairs.len() as u32);
            for (alias, target) in pairs {
                self.string(alias);
                self.string(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::writer::Writer;
    use super::*;

    fn open_bytes(bytes: &[u8]) -> Result<Ct2File, ConvertError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, bytes).unwrap();
        Ct2File::open(&path)
    }

    fn error(bytes: &[u8]) -> String {
        match open_bytes(bytes) {
            Ok(_) => panic!("parsed"),
            Err(e) => {
                assert_eq!(e.kind(), "invalid_ct2");
                e.to_string()
            }
        }
    }

    fn small() -> Writer {
        let mut w = Writer::new("TestSpec", 2, 2);
        w.variable("a/weight", &[2, 3], 4, &[1u8; 12]);
        w.variable("b/scalar", &[], 1, &[0xfe]);
        w
    }

    #[test]
    fn reads_header_scalars_data_and_aliases() {
        let mut w = small();
        w.aliases(&[("c/weight", "a/weight"), ("d/weight", "c/weight")]);
        let f = open_bytes(&w.bytes).unwrap();
        assert_eq!((f.spec.as_str(), f.revision), ("TestSpec", 2));
        let a = f.get("a/weight").unwrap();
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::F16, vec![2, 3]));
        assert_eq!(f.read(a).unwrap(), vec![1u8; 12]);
        assert_eq!(f.scalar("b/scalar").unwrap(), -2);
        assert_eq!(f.get("d/weight"), Some(a));
        assert!(f.is_alias("c/weight") && !f.is_alias("a/weight"));
        assert_eq!(f.names().collect::<Vec<_>>(), ["a/weight", "b/scalar"]);
        assert!(f.scalar("a/weight").is_err());
    }

    #[test]
    fn refuses_damaged_headers() {
        let mut good = small();
        good.aliases(&[]);
        // Every truncation is an error, never a panic.
        for cut in 0..good.bytes.len() {
            error(&good.bytes[..cut]);
        }
        let mut trailing = good.bytes.clone();
        trailing.push(0);
        assert!(error(&trailing).contains("1 bytes follow"));

        let mut w = Writer::new("S", 1, 1);
        w.variable("x", &[2, 2], 4, &[0; 6]);
        w.aliases(&[]);
        assert!(error(&w.bytes).contains("needs 8 bytes"));

        let mut w = Writer::new("S", 1, 1);
        w.variable("x", &[u32::MAX, u32::MAX, u32::MAX], 0, &[]);
        w.aliases(&[]);
        assert!(error(&w.bytes).contains("overflows"));

        let mut w = Writer::new("S", 1, 1);
        w.variable("x", &[1; 9], 0, &[0; 4]);
        w.aliases(&[]);
        assert!(error(&w.bytes).contains("rank 9"));

        let mut w = Writer::new("S", 1, 1);
        w.variable("x", &[1], 9, &[0; 4]);
        w.aliases(&[]);
        assert!(error(&w.bytes).contains("dtype id 9"));

        // A byte count larger than the file is refused before anything is allocated.
        let mut w = Writer::new("S", 1, 1);
        w.string("x");
        w.bytes.push(1);
        w.u32(1 << 30);
        w.bytes.push(1);
        w.u32(1 << 30);
        assert!(error(&w.bytes).contains("past the end"));

        // A variable count far beyond what the file holds.
        let mut w = Writer::new("S", 1, u32::MAX);
        w.variable("x", &[], 1, &[0]);
        assert!(error(&w.bytes).contains("ends inside"));

        let mut w = Writer::new("S", 1, 1);
        w.bytes.extend([3, 0, b'a', 0, 0]);
        assert!(error(&w.bytes).contains("NUL"));

        let mut w = Writer::new("S", 1, 1);
        w.bytes.extend([3, 0, 0xff, 0xfe, 0]);
        assert!(error(&w.bytes).contains("UTF-8"));

        let mut w = Writer::new("S", 1, 1);
        w.bytes.extend([0, 0]);
        assert!(error(&w.bytes).contains("length 0"));

        let mut version = good.bytes.clone();
        version[0] = 99;
        assert!(error(&version).contains("binary version 99"));

        let mut w = Writer::new("S", 1, 2);
        w.variable("x", &[], 1, &[0]);
        w.variable("x", &[], 1, &[0]);
        w.aliases(&[]);
        assert!(error(&w.bytes).contains("twice"));
    }

    #[test]
    fn refuses_bad_aliases() {
        let mut w = small();
        w.aliases(&[("c", "nowhere")]);
        assert!(error(&w.bytes).contains("not stored"));
        let mut w = small();
        w.aliases(&[("c", "d"), ("d", "c")]);
        assert!(error(&w.bytes).contains("loop"));
        let mut w = small();
        w.aliases(&[("a/weight", "b/scalar")]);
        assert!(error(&w.bytes).contains("twice"));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut good = small();
        good.aliases(&[("c/weight", "a/weight")]);
        // Flip each byte of the header (the first 60) to a few values.
        for i in 0..good.bytes.len().min(60) {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut bytes = good.bytes.clone();
                bytes[i] = v;
                let _ = open_bytes(&bytes);
            }
        }
    }
}
