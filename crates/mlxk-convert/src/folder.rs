//! Hugging Face model folders of safetensors files: reading their config and tensors (one file or
//! shards), writing weights in mlx-lm's layout (shards of at most 5 GiB and an index), copying
//! the files that travel with the weights, and rebuilding a lost or wrong index.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::{json, Map, Value};

use crate::error::ConvertError;

pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// mlx-lm's `MAX_FILE_SIZE_GB`: a shard grows until the next tensor would take it past this.
const MAX_SHARD_BYTES: u64 = 5 << 30;
/// Files whose content the conversion replaces or leaves behind.
const WEIGHT_SUFFIXES: &[&str] = &[
    ".safetensors",
    ".gguf",
    ".bin",
    ".pth",
    ".pt",
    ".npz",
    ".h5",
    ".msgpack",
    ".ckpt",
    ".onnx",
];

/// One tensor as stored: dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model folder: its `config.json` and where its safetensors files are.
pub struct ModelFolder {
    pub path: PathBuf,
    pub config: Map<String, Value>,
    pub weight_files: Vec<PathBuf>,
}

impl ModelFolder {
    /// Opens a folder holding `config.json` and at least one `.safetensors` file.
    pub fn open(path: &Path) -> Result<ModelFolder, ConvertError> {
        let not_a_model = |why: &str| ConvertError::NotAModelFolder {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        if !path.is_dir() {
            return Err(not_a_model("not a folder"));
        }
        let config_path = path.join("config.json");
        let text = fs::read(&config_path).map_err(|_| not_a_model("no config.json"))?;
        let config = match serde_json::from_slice(&text) {
            Ok(Value::Object(config)) => config,
            _ => return Err(not_a_model("config.json is not a JSON object")),
        };
        let weight_files = safetensors_files(path)?;
        if weight_files.is_empty() {
            return Err(not_a_model("no .safetensors files"));
        }
        Ok(ModelFolder {
            path: path.to_path_buf(),
            config,
            weight_files,
        })
    }

    /// Every tensor of every file, by name; a name in two files is an error.
    pub fn read_tensors(&self) -> Result<BTreeMap<String, Tensor>, ConvertError> {
        let mut tensors = BTreeMap::new();
        for file in &self.weight_files {
            let bytes = fs::read(file).map_err(|e| ConvertError::io("reading", file, e))?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| bad_safetensors(file, e))?;
            for (name, view) in st.tensors() {
                let tensor = Tensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                if tensors.insert(name.clone(), tensor).is_some() {
                    return Err(ConvertError::Safetensors(format!(
                        "the tensor {name} is in more than one file"
                    )));
                }
            }
        }
        Ok(tensors)
    }
}

/// The folder's top-level `.safetensors` files, sorted by name.
fn safetensors_files(folder: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let entries = fs::read_dir(folder).map_err(|e| ConvertError::io("reading", folder, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".safetensors") && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn bad_safetensors(file: &Path, e: impl std::fmt::Display) -> ConvertError {
    ConvertError::Safetensors(format!("{}: {e}", file.display()))
}

/// What `write_weights` wrote.
pub struct Written {
    pub shards: usize,
    pub bytes: u64,
}

/// Writes `tensors` as mlx-lm saves a model: `model.safetensors` (or
/// `model-0000i-of-0000n.safetensors` past 5 GiB) with `{"format": "mlx"}` metadata, and an index
/// whose metadata holds the weights' size and `total_parameters`.
pub fn write_weights(
    folder: &Path,
    tensors: &BTreeMap<String, Tensor>,
    total_parameters: u64,
) -> Result<Written, ConvertError> {
    let mut shards: Vec<Vec<(&String, &Tensor)>> = Vec::new();
    let mut shard_bytes = 0u64;
    for (name, tensor) in tensors {
        let size = tensor.data.len() as u64;
        if shards.is_empty() || shard_bytes + size > MAX_SHARD_BYTES {
            shards.push(Vec::new());
            shard_bytes = 0;
        }
        shards.last_mut().expect("pushed").push((name, tensor));
        shard_bytes += size;
    }
    let count = shards.len();
    let mut weight_map = Map::new();
    let mut bytes = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file_name = if count > 1 {
            format!("model-{:05}-of-{count:05}.safetensors", i + 1)
        } else {
            "model.safetensors".to_string()
        };
        let views: Vec<(String, TensorView)> = shard
            .iter()
            .map(|(name, t)| {
                let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
                    .expect("tensor sizes are consistent");
                ((*name).clone(), view)
            })
            .collect();
        let metadata = [("format".to_string(), "mlx".to_string())];
        let path = folder.join(&file_name);
        safetensors::serialize_to_file(views, Some(metadata.into_iter().collect()), &path)
            .map_err(|e| ConvertError::io("writing", &path, std::io::Error::other(e)))?;
        for (name, t) in shard {
            weight_map.insert((*name).clone(), json!(file_name));
            bytes += t.data.len() as u64;
        }
    }
    let index = json!({
        "metadata": {"total_size": bytes, "total_parameters": total_parameters},
        "weight_map": weight_map,
    });
    write_json(&folder.join(INDEX_FILE), &index)?;
    Ok(Written {
        shards: count,
        bytes,
    })
}

/// Copies the files that travel with the weights (tokenizer, chat template, generation config,
/// custom code, licence...): every top-level file but weights, indexes, `config.json` and
/// `README.md` (replaced by a model card, as mlx-lm does), and hidden files.
pub fn copy_companions(source: &Path, target: &Path) -> Result<Vec<String>, ConvertError> {
    let entries = fs::read_dir(source).map_err(|e| ConvertError::io("reading", source, e))?;
    let mut copied = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let skip = !path.is_file()
            || name.starts_with('.')
            || name == "config.json"
            || name == "README.md"
            || name.ends_with(".index.json")
            || WEIGHT_SUFFIXES.iter().any(|s| name.ends_with(s));
        if skip {
            continue;
        }
        let to = target.join(name);
        fs::copy(&path, &to).map_err(|e| ConvertError::io("copying", &path, e))?;
        copied.push(name.to_string());
    }
    copied.sort();
    fs::write(target.join("README.md"), MODEL_CARD)
        .map_err(|e| ConvertError::io("writing", target.join("README.md"), e))?;
    Ok(copied)
}

/// Every top-level file but the safetensors files and their index, unchanged (config and README
/// included): what a folder keeps when only its index is rebuilt.
pub fn copy_all_but_weights(source: &Path, target: &Path) -> Result<(), ConvertError> {
    let entries = fs::read_dir(source).map_err(|e| ConvertError::io("reading", source, e))?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file()
            && !name.starts_with('.')
            && !name.ends_with(".safetensors")
            && name != INDEX_FILE
        {
            fs::copy(&path, target.join(name))
                .map_err(|e| ConvertError::io("copying", &path, e))?;
        }
    }
    Ok(())
}

/// The card mlx-lm writes for a converted local folder.
const MODEL_CARD: &str =
    "---\nlanguage: en\nlibrary_name: mlx\npipeline_tag: text-generation\ntags:\n- mlx\n---\n";

/// `config.json` as mlx-lm saves it: without `_name_or_path` and `vision_config`, keys sorted,
/// indented by four.
pub fn write_config(folder: &Path, config: &Map<String, Value>) -> Result<(), ConvertError> {
    let mut config = config.clone();
    config.remove("_name_or_path");
    config.remove("vision_config");
    config.sort_keys();
    write_json(&folder.join("config.json"), &Value::Object(config))
}

pub fn write_json(path: &Path, value: &Value) -> Result<(), ConvertError> {
    use serde::Serialize;
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    value
        .serialize(&mut serializer)
        .expect("JSON values serialise");
    fs::write(path, text).map_err(|e| ConvertError::io("writing", path, e))
}

/// The index of `folder`'s safetensors files, rebuilt from their headers: where each tensor
/// is, and the size of all tensor data.
pub fn rebuilt_index(folder: &Path) -> Result<Value, ConvertError> {
    let files = safetensors_files(folder)?;
    if files.is_empty() {
        return Err(ConvertError::NotAModelFolder {
            path: folder.to_path_buf(),
            why: "no .safetensors files".into(),
        });
    }
    let mut weight_map: BTreeMap<String, String> = BTreeMap::new();
    let mut total_size = 0u64;
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("listed by name")
            .to_string();
        let header = read_header(file)?;
        for (tensor, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
            let offsets = info
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
                .ok_or_else(|| bad_safetensors(file, format!("{tensor} has no data_offsets")))?;
            total_size += offsets.1.saturating_sub(offsets.0);
            if let Some(other) = weight_map.insert(tensor.clone(), name.clone()) {
                return Err(ConvertError::Safetensors(format!(
                    "the tensor {tensor} is in both {other} and {name}"
                )));
            }
        }
    }
    Ok(json!({"metadata": {"total_size": total_size}, "weight_map": weight_map}))
}

/// A safetensors file's JSON header, read without the tensor data.
fn read_header(file: &Path) -> Result<Map<String, Value>, ConvertError> {
    use std::io::Read;
    let mut f = fs::File::open(file).map_err(|e| ConvertError::io("reading", file, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad_safetensors(file, e))?;
    let len = u64::from_le_bytes(len);
    let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(bad_safetensors(
            file,
            "header length past the end of the file",
        ));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad_safetensors(file, e))?;
    match serde_json::from_slice(&header) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad_safetensors(file, "the header is not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor {
            dtype: Dtype::F32,
            shape: vec![values.len()],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn rebuilt_index_names_every_tensor_once() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = BTreeMap::from([
            ("a.weight".to_string(), tensor(&[1.0, 2.0])),
            ("b.weight".to_string(), tensor(&[3.0])),
        ]);
        write_weights(dir.path(), &tensors, 3).unwrap();
        let index = rebuilt_index(dir.path()).unwrap();
        assert_eq!(index["metadata"]["total_size"], 12);
        assert_eq!(index["weight_map"]["a.weight"], "model.safetensors");
        assert_eq!(index["weight_map"]["b.weight"], "model.safetensors");

        let written: Value =
            serde_json::from_slice(&fs::read(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(written["metadata"]["total_parameters"], 3);
        assert_eq!(written["weight_map"], index["weight_map"]);
    }
}
