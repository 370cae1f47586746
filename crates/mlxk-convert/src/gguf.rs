//! A GGUF model seen through `gguf-rs-lib`: typed metadata look-ups and raw tensor payloads.
//! A model split by llama.cpp's `gguf-split` (`name-00001-of-00003.gguf`, …) is opened as one:
//! metadata from the first part, tensors from whichever part holds them.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use gguf_rs_lib::format::metadata::MetadataValue;
use gguf_rs_lib::reader::file_reader::GGUFFileReader;
use gguf_rs_lib::tensor::tensor_type::TensorType;

use crate::error::ConvertError;

/// One tensor's descriptor: GGML dimensions are innermost first (`[cols, rows]` for a matrix).
#[derive(Debug, Clone)]
pub struct TensorDesc {
    pub name: String,
    pub kind: TensorType,
    pub dims: Vec<u64>,
}

impl TensorDesc {
    /// (rows, cols) in row-major terms, for 1-D and 2-D tensors.
    pub fn rows_cols(&self) -> (usize, usize) {
        match self.dims.as_slice() {
            [cols] => (1, *cols as usize),
            [cols, rows] => (*rows as usize, *cols as usize),
            other => (
                other[1..].iter().product::<u64>() as usize,
                other[0] as usize,
            ),
        }
    }
}

type Reader = GGUFFileReader<BufReader<File>>;

pub struct GgufFile {
    parts: Vec<Reader>,
    /// Which part holds each tensor.
    part_of: HashMap<String, usize>,
}

/// The parts of a split model when `path` names one of them (`…-00002-of-00003.gguf`).
fn split_parts(path: &Path) -> Option<Vec<PathBuf>> {
    let name = path.file_name()?.to_str()?.strip_suffix(".gguf")?;
    let (rest, count) = name.rsplit_once("-of-")?;
    let (prefix, number) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(count) || !digits(number) {
        return None;
    }
    let count: usize = count.parse().ok().filter(|c| *c > 0)?;
    Some(
        (1..=count)
            .map(|n| path.with_file_name(format!("{prefix}-{n:05}-of-{count:05}.gguf")))
            .collect(),
    )
}

fn open_one(path: &Path) -> Result<Reader, ConvertError> {
    // The reader's own error for another kind of file is a bare "failed to fill whole
    // buffer": say what the file is not.
    let mut magic = [0u8; 4];
    let starts_as_gguf = File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut magic))
        .map(|()| &magic == b"GGUF");
    if let Ok(false) | Err(_) = starts_as_gguf {
        if path.is_file() {
            return Err(ConvertError::Gguf(format!(
                "{}: it does not start with the GGUF signature",
                path.display()
            )));
        }
    }
    gguf_rs_lib::reader::file_reader::open_gguf_file(path)
        .map_err(|e| ConvertError::Gguf(format!("{}: {e}", path.display())))
}

impl GgufFile {
    /// Opens a GGUF file, or every part of a split model when `path` names one part.
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        let paths = split_parts(path).unwrap_or_else(|| vec![path.to_path_buf()]);
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            if paths.len() > 1 {
                return Err(ConvertError::Gguf(format!(
                    "{} is one of {} parts, and {} is missing",
                    path.display(),
                    paths.len(),
                    missing.display()
                )));
            }
        }
        let parts = paths
            .iter()
            .map(|p| open_one(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut part_of = HashMap::new();
        for (index, part) in parts.iter().enumerate() {
            for info in part.tensor_infos() {
                if part_of.insert(info.name().to_string(), index).is_some() {
                    return Err(ConvertError::Gguf(format!(
                        "tensor {} is in more than one part",
                        info.name()
                    )));
                }
            }
        }
        Ok(GgufFile { parts, part_of })
    }

    /// How many files the model is (1 unless split).
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }

    fn value(&self, key: &str) -> Option<&MetadataValue> {
        self.parts[0].metadata().get(key)
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        self.value(key)?.as_str()
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.value(key)?.as_u64()
    }

    /// A float32 hyper-parameter as the shortest f64 that prints the same, so that `1e-5`
    /// stays `1e-5` in `config.json` instead of `9.999999747378752e-6`.
    pub fn float(&self, key: &str) -> Option<f64> {
        let single = self.value(key)?.as_f64()? as f32;
        single.to_string().parse().ok()
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.value(key)? {
            MetadataValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn require_u64(&self, key: &str) -> Result<u64, ConvertError> {
        self.u64(key)
            .ok_or_else(|| ConvertError::MissingMetadata(key.to_string()))
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>, ConvertError> {
        match self.value(key) {
            Some(MetadataValue::Array(array)) => array
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ConvertError::Gguf(format!("{key} is not an array of strings"))),
            _ => Err(ConvertError::MissingMetadata(key.to_string())),
        }
    }

    pub fn integers(&self, key: &str) -> Result<Vec<i64>, ConvertError> {
        match self.value(key) {
            Some(MetadataValue::Array(array)) => array
                .iter()
                .map(|v| v.as_i64())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ConvertError::Gguf(format!("{key} is not an array of integers"))),
            _ => Err(ConvertError::MissingMetadata(key.to_string())),
        }
    }

    /// Every tensor, in file order (part after part).
    pub fn tensors(&self) -> Vec<TensorDesc> {
        self.parts
            .iter()
            .flat_map(|part| part.tensor_infos())
            .map(|info| TensorDesc {
                name: info.name().to_string(),
                kind: info.tensor_type(),
                dims: info.shape().dims().to_vec(),
            })
            .collect()
    }

    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, ConvertError> {
        let part = self
            .part_of
            .get(name)
            .ok_or_else(|| ConvertError::Gguf(format!("no tensor {name}")))?;
        let data = self.parts[*part]
            .load_tensor_data(name)
            .map_err(|e| ConvertError::Gguf(format!("reading tensor {name}: {e}")))?
            .ok_or_else(|| ConvertError::Gguf(format!("tensor {name} has no data")))?;
        Ok(data.as_slice().to_vec())
    }
}
