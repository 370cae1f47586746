//! Ollama's `options`, `format` and `think`, checked and mapped onto the generation service.
//!
//! Options honoured: `temperature`, `top_p`, `top_k` (0 or less turns it off), `min_p`,
//! `repeat_penalty`, `seed` (negative: random), `stop`, `num_predict` (-1 or -2: the server's
//! limit) and `num_ctx`, which caps the answer's tokens (the prompt is bounded by the model's own
//! context). `presence_penalty` and `frequency_penalty` map onto the repetition penalty as on
//! the OpenAI routes (1 + penalty). Left out, each takes the model's own default from its
//! `generation_config.json` as on every route of this server, not Ollama's. Samplers this
//! engine does not have are refused unless off (`mirostat` 0, `typical_p` and `tfs_z` 1).
//! Every other option is ignored, as Ollama ignores options it does not know: the runtime's
//! (`num_gpu`, `num_thread`, `num_batch`, `use_mmap`...) have no meaning here, and
//! `repeat_last_n` is the engine's own (20).

use mlxk_engine::constraint::Grammar;
use mlxk_engine::SamplingChoice;
use serde::Deserialize;
use serde_json::Value;

use crate::checks;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

/// The options this server reads. Integers are taken as JSON numbers, as Ollama takes them.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<f64>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    repeat_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<f64>,
    #[serde(default)]
    stop: Option<StopField>,
    #[serde(default)]
    num_predict: Option<f64>,
    #[serde(default)]
    num_ctx: Option<f64>,
    #[serde(default)]
    mirostat: Option<f64>,
    #[serde(default)]
    typical_p: Option<f32>,
    #[serde(default)]
    tfs_z: Option<f32>,
}

/// How an answer is sampled and where it ends.
#[derive(Debug)]
pub struct Sampling {
    pub choice: SamplingChoice,
    pub max_tokens: usize,
    pub stops: Vec<String>,
}

impl Options {
    /// Checked and mapped; `limit` is the server's cap on new tokens (and the default).
    pub fn sampling(&self, limit: usize) -> Result<Sampling, ApiError> {
        for (field, value, off) in [
            ("options.mirostat", self.mirostat.map(|m| m as f32), 0.0),
            ("options.typical_p", self.typical_p, 1.0),
            ("options.tfs_z", self.tfs_z, 1.0),
        ] {
            if value.is_some_and(|v| v != off) {
                return Err(ApiError::bad_request(format!(
                    "'{field}' is not supported by this engine (only {off}, off)"
                ))
                .with_param("options"));
            }
        }
        let top_k = integer("options.top_k", self.top_k)?;
        let seed = integer("options.seed", self.seed)?;
        let penalty = checks::repetition_penalty(
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        );
        let choice = SamplingChoice {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: top_k.map(|k| k.max(0) as usize),
            min_p: self.min_p,
            repetition_penalty: penalty,
            seed: seed.and_then(|s| u64::try_from(s).ok()),
        };
        checks::sampling(
            &choice,
            [
                "options.temperature",
                "options.top_p",
                "options.top_k",
                "options.min_p",
                "options.repeat_penalty",
            ],
        )?;
        let mut max_tokens = match integer("options.num_predict", self.num_predict)? {
            None | Some(-1) | Some(-2) => limit,
            Some(n) if n >= 1 => (n as usize).min(limit),
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "'options.num_predict' is {n}: give at least 1, or -1 for the server's limit ({limit})"
                ))
                .with_param("options"))
            }
        };
        match integer("options.num_ctx", self.num_ctx)? {
            Some(n) if n < 1 => {
                return Err(ApiError::bad_request(format!(
                    "'options.num_ctx' is {n}: give at least 1"
                ))
                .with_param("options"))
            }
            Some(n) => max_tokens = max_tokens.min(n as usize),
            None => {}
        }
        let stops = match &self.stop {
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(list)) => list.clone(),
            None => Vec::new(),
        };
        checks::stops("options.stop", &stops)?;
        Ok(Sampling {
            choice,
            max_tokens,
            stops,
        })
    }
}

/// A whole number given as a JSON number.
fn integer(field: &'static str, value: Option<f64>) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if v.fract() != 0.0 || !v.is_finite() || v.abs() > 9.0e15 => Err(
            ApiError::bad_request(format!("'{field}' must be a whole number, not {v}"))
                .with_param("options"),
        ),
        value => Ok(value.map(|v| v as i64)),
    }
}

/// `format`: `"json"` is any JSON object, an object is a JSON schema the answer must match,
/// `""` or `null` is free text.
pub fn grammar(format: Option<&Value>) -> Result<Option<Grammar>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Grammar::JsonObject)),
        Some(schema @ Value::Object(_)) => Ok(Some(Grammar::JsonSchema(schema.clone()))),
        Some(other) => Err(ApiError::bad_request(format!(
            "'format' is {other}: \"json\" or a JSON schema object"
        ))
        .with_param("format")),
    }
}

/// `think`: whether the model's reasoning is returned (in `thinking`). This engine always
/// splits a reasoning block from the answer; with `false` it is left out of the reply (the
/// model may still reason: its chat template is not told). Left out, it is returned.
/// Reasoning levels (`"high"`, `"medium"`, `"low"`) are refused: no model here takes them.
pub fn think(think: Option<&Value>) -> Result<bool, ApiError> {
    match think {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(show)) => Ok(*show),
        Some(other) => Err(ApiError::bad_request(format!(
            "'think' is {other}: true or false (reasoning levels are not supported)"
        ))
        .with_param("think")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampling(options: Value) -> Result<Sampling, ApiError> {
        serde_json::from_value::<Options>(options)
            .unwrap()
            .sampling(512)
    }

    #[test]
    fn options_map_onto_the_engine() {
        let s = sampling(
            json!({"temperature": 0, "top_p": 0.5, "top_k": 40.0, "min_p": 0.1,
            "repeat_penalty": 1.1, "seed": 7, "stop": "END", "num_predict": 16,
            "num_gpu": 99, "unknown": "x"}),
        )
        .unwrap();
        assert_eq!(
            s.choice,
            SamplingChoice {
                temperature: Some(0.0),
                top_p: Some(0.5),
                top_k: Some(40),
                min_p: Some(0.1),
                repetition_penalty: Some(1.1),
                seed: Some(7),
            }
        );
        assert_eq!((s.max_tokens, s.stops), (16, vec!["END".to_string()]));
        let s =
            sampling(json!({"num_predict": -1, "top_k": -1, "seed": -1, "frequency_penalty": 0.5}))
                .unwrap();
        assert_eq!(
            (s.max_tokens, s.choice.top_k, s.choice.seed),
            (512, Some(0), None)
        );
        assert_eq!(s.choice.repetition_penalty, Some(1.5));
        assert_eq!(
            sampling(json!({"num_predict": 9999})).unwrap().max_tokens,
            512
        );
        assert_eq!(sampling(json!({"num_ctx": 8})).unwrap().max_tokens, 8);
        assert_eq!(
            sampling(json!({"mirostat": 0, "typical_p": 1.0}))
                .unwrap()
                .max_tokens,
            512
        );
    }

    #[test]
    fn options_out_of_range_or_unsupported_are_named() {
        for (options, named) in [
            (json!({"temperature": 3}), "options.temperature"),
            (json!({"top_p": 2}), "options.top_p"),
            (json!({"num_predict": 0}), "options.num_predict"),
            (json!({"num_predict": 1.5}), "options.num_predict"),
            (json!({"num_ctx": 0}), "options.num_ctx"),
            (json!({"stop": [""]}), "options.stop"),
            (json!({"mirostat": 2}), "options.mirostat"),
            (json!({"tfs_z": 0.5}), "options.tfs_z"),
        ] {
            let error = sampling(options.clone()).unwrap_err();
            assert!(
                error.message.contains(named),
                "{options}: {}",
                error.message
            );
        }
    }

    #[test]
    fn format_and_think() {
        assert_eq!(
            grammar(Some(&json!("json"))).unwrap(),
            Some(Grammar::JsonObject)
        );
        assert_eq!(grammar(Some(&json!(""))).unwrap(), None);
        let schema = json!({"type": "object"});
        assert_eq!(
            grammar(Some(&schema)).unwrap(),
            Some(Grammar::JsonSchema(schema))
        );
        assert!(grammar(Some(&json!("yaml"))).is_err());
        assert_eq!(
            (think(None).unwrap(), think(Some(&json!(false))).unwrap()),
            (true, false)
        );
        assert!(think(Some(&json!("high"))).is_err());
    }
}
