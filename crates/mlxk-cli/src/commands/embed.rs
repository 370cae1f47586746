//! `mlxk embed`: text to vectors with an embedding model, as JSON lines (what scripts and index
//! builders read), in mlx-knife's record shape so its users' scripts keep working.

use std::io::{self, Read};

use clap::Args;
use mlxk_core::classify::ModelType;
use mlxk_core::usage::UsageLog;
use mlxk_core::{CoreError, Library, RunnableModel};
use mlxk_engine::embedding::shortened;
use mlxk_engine::{EmbeddingInput, EmbeddingModel, InputKind, RuntimeInfo};
use serde_json::{json, Map, Value};

use super::WeightArgs;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// The embedding model: name, org/name, substring, or NAME@REVISION.
    pub model: String,
    /// The texts, one vector each; `-` reads one text from stdin.
    pub texts: Vec<String>,
    /// Read JSON lines from stdin (`{"text": ...}`, other fields kept) and write one record per
    /// line.
    #[arg(long, conflicts_with = "texts")]
    pub batch: bool,
    /// Embed the texts as search queries (with the model's query prompt, where it has one).
    #[arg(long, conflicts_with = "document")]
    pub query: bool,
    /// Embed the texts as documents (the default).
    #[arg(long)]
    pub document: bool,
    /// Keep the first N dimensions, scaled back to length 1.
    #[arg(long, value_name = "N")]
    pub dimensions: Option<usize>,
    /// Refuse a text longer than the model reads instead of cutting it.
    #[arg(long)]
    pub no_truncate: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

pub fn run(args: &EmbedArgs, _output: &Output) -> Result<Outcome, CliError> {
    let records = read_records(args)?;
    let library = Library::from_env();
    let runnable = find_embedder(&library, &args.model)?;
    let model = EmbeddingModel::load(&runnable.dir, &args.weights.policy()?)
        .map_err(|e| CliError::new("execution_error", e.to_string()))?;
    let _ = UsageLog::for_cache(library.cache()).record(&runnable.name);
    if let Some(n) = args.dimensions {
        if n == 0 || n > model.dimensions() {
            return Err(CliError::usage(format!(
                "--dimensions {n}: {} has {} dimensions",
                runnable.name,
                model.dimensions()
            )));
        }
    }
    let kind = if args.query {
        InputKind::Query
    } else {
        InputKind::Document
    };
    if args.query && !model.distinguishes_queries() {
        eprintln!(
            "note: {} embeds queries and documents alike (it declares no query prompt)",
            runnable.name
        );
    }
    let inputs: Vec<EmbeddingInput> = records
        .iter()
        .map(|r| EmbeddingInput::Text(r["text"].as_str().unwrap_or_default().to_string()))
        .collect();
    if args.no_truncate {
        let tokenized = model
            .tokenize(&inputs, kind)
            .map_err(|e| CliError::new("execution_error", e.to_string()))?;
        if let Some(i) = tokenized.iter().position(|(_, cut)| *cut) {
            return Err(CliError::new(
                "input_too_long",
                format!(
                    "text {} is longer than the {} tokens {} reads (--no-truncate)",
                    i + 1,
                    model.max_tokens(),
                    runnable.name
                ),
            ));
        }
    }
    let embedded = model
        .embed(&inputs, kind)
        .map_err(|e| CliError::new("execution_error", e.to_string()))?;

    let dimensions = args.dimensions.unwrap_or(model.dimensions());
    let identity = json!({
        "model": runnable.name,
        "dimensions": dimensions,
        "content_hash": content_hash(&runnable),
        "device": RuntimeInfo::detect().default_device,
    });
    let mut lines = String::new();
    let mut out = Vec::with_capacity(records.len());
    for (i, (mut record, vector)) in records.into_iter().zip(embedded).enumerate() {
        if vector.truncated {
            eprintln!(
                "note: text {} was cut to the {} tokens {} reads",
                i + 1,
                model.max_tokens(),
                runnable.name
            );
        }
        let values = match args.dimensions {
            Some(n) => shortened(&vector.vector, n),
            None => vector.vector,
        };
        record.insert("embedding".into(), json!(values));
        let mut metadata = identity.clone();
        metadata["tokens"] = json!(vector.tokens);
        metadata["truncated"] = json!(vector.truncated);
        record.insert("metadata".into(), metadata);
        let record = Value::Object(record);
        lines.push_str(&record.to_string());
        lines.push('\n');
        out.push(record);
    }
    let mut outcome = Outcome::new(json!({ "records": out }), lines);
    outcome.text.pop(); // the last newline is the printer's
    Ok(outcome)
}

/// The texts to embed, each as the record its output extends.
fn read_records(args: &EmbedArgs) -> Result<Vec<Map<String, Value>>, CliError> {
    let record = |text: String| Map::from_iter([("text".to_string(), Value::String(text))]);
    if args.batch {
        let mut input = String::new();
        io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| CliError::new("io_error", format!("reading stdin: {e}")))?;
        let mut records = Vec::new();
        for (number, line) in input.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| CliError::usage(format!("--batch line {}: {why}", number + 1));
            let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            match value {
                Value::Object(map) if map.get("text").is_some_and(Value::is_string) => {
                    records.push(map)
                }
                _ => return Err(bad("expected an object with a \"text\" string".into())),
            }
        }
        if records.is_empty() {
            return Err(CliError::usage("--batch: no records on stdin"));
        }
        return Ok(records);
    }
    match args.texts.as_slice() {
        [] => Err(CliError::usage(
            "nothing to embed: give texts, `-` to read one from stdin, or --batch",
        )),
        [dash] if dash == "-" => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::new("io_error", format!("reading stdin: {e}")))?;
            Ok(vec![record(text.trim_end_matches('\n').to_string())])
        }
        texts => Ok(texts.iter().cloned().map(record).collect()),
    }
}

/// The model `name` resolves to; it must be an embedding model that runs here.
fn find_embedder(library: &Library, name: &str) -> Result<RunnableModel, CliError> {
    match library.find_runnable(name) {
        Ok(model) if model.info.classification.model_type == ModelType::Embedding => Ok(model),
        Ok(model) => Err(CliError::new(
            "not_an_embedding_model",
            format!(
                "{} is a {} model, not an embedding model (it declares no pooling); use `mlxk run` for it",
                model.name,
                model.info.classification.model_type.label()
            ),
        )),
        Err(e @ CoreError::ModelNotFound(_)) => {
            let mut error = CliError::from(e);
            error.hint = Some(format!("not in the cache; fetch it with: mlxk pull {name}"));
            Err(error)
        }
        Err(e) => Err(e.into()),
    }
}

/// What identifies the weights: the snapshot's commit, or a workspace's content hash.
fn content_hash(model: &RunnableModel) -> Option<String> {
    model.info.commit.clone().or_else(|| {
        model
            .info
            .workspace
            .as_ref()
            .and_then(|w| w.content_hash.clone())
    })
}
