//! Checks every protocol makes of a generation request before it queues, each failure a 400
//! naming the field as that protocol spells it: sampling values in range, tools that can be
//! offered, and grammars (a response format, forced or strict calls) the engine can enforce.
//! A stream must never start with a 200 and then fail on one of these.

use std::collections::HashSet;

use mlxk_engine::constraint::Grammar;
use mlxk_engine::logprobs::MAX_TOP_LOGPROBS;
use mlxk_engine::tool_use::{Tool, ToolChoice, ToolUse};
use mlxk_engine::SamplingChoice;

use crate::error::ApiError;

/// Larger than any vocabulary: a `top_k` beyond it filters nothing.
pub const MAX_TOP_K: usize = mlxk_engine::sampler::MAX_TOP_K;
pub const MAX_STOPS: usize = 16;

/// `value`, if given, lies in `low..=high`.
pub fn in_range(
    field: &'static str,
    value: Option<f32>,
    low: f32,
    high: f32,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !(v.is_finite() && (low..=high).contains(&v)) => Err(ApiError::bad_request(
            format!("'{field}' must be between {low} and {high}, not {v}"),
        )
        .with_param(field)),
        _ => Ok(()),
    }
}

/// The sampling fields' names in OpenAI's, Anthropic's and the Responses API's requests.
pub const SAMPLING_FIELDS: [&str; 5] = [
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
];

/// Sampling values a client chose, with the names its protocol gives them (temperature, top_p,
/// top_k, min_p, repetition penalty in that order).
pub fn sampling(choice: &SamplingChoice, names: [&'static str; 5]) -> Result<(), ApiError> {
    let [temperature, top_p, top_k, min_p, penalty] = names;
    in_range(temperature, choice.temperature, 0.0, 2.0)?;
    in_range(top_p, choice.top_p, 0.0, 1.0)?;
    in_range(min_p, choice.min_p, 0.0, 1.0)?;
    in_range(penalty, choice.repetition_penalty, 0.01, 10.0)?;
    if let Some(k) = choice.top_k.filter(|k| *k > MAX_TOP_K) {
        return Err(ApiError::bad_request(format!(
            "'{top_k}' must be at most {MAX_TOP_K} (0 turns it off), not {k}"
        ))
        .with_param(top_k));
    }
    Ok(())
}

/// The repetition penalty a request asks for: mlx-lm's multiplicative one, else OpenAI's
/// additive frequency or presence penalty `p` (positive) as `1 + p`, which has no exact
/// counterpart.
pub fn repetition_penalty(
    multiplicative: Option<f32>,
    frequency: Option<f32>,
    presence: Option<f32>,
) -> Option<f32> {
    let additive = |p: Option<f32>| p.filter(|p| *p > 0.0).map(|p| 1.0 + p);
    multiplicative
        .or(additive(frequency))
        .or(additive(presence))
}

/// How many alternatives per token to report (`Some(0)`: the chosen token's log-probability
/// alone; `None`: none asked): `logprobs: true` with `top_logprobs` (0 to 20).
pub fn logprobs(wanted: bool, top: Option<u32>) -> Result<Option<usize>, ApiError> {
    let bad = |message: String| Err(ApiError::bad_request(message).with_param("top_logprobs"));
    match (wanted, top) {
        (_, Some(n)) if n as usize > MAX_TOP_LOGPROBS => bad(format!(
            "'top_logprobs' must be between 0 and {MAX_TOP_LOGPROBS}"
        )),
        (false, Some(n)) if n > 0 => bad("'top_logprobs' needs 'logprobs': true".into()),
        (true, top) => Ok(Some(top.unwrap_or(0) as usize)),
        (false, _) => Ok(None),
    }
}

/// Up to [`MAX_STOPS`] non-empty stop strings.
pub fn stops(field: &'static str, stops: &[String]) -> Result<(), ApiError> {
    if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(format!(
            "'{field}' takes up to {MAX_STOPS} non-empty strings"
        ))
        .with_param(field));
    }
    Ok(())
}

/// Function names as OpenAI and Anthropic allow them.
pub fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Tools offered: valid names, each once. `place(i)` says where tool `i` is in the request
/// (`tools[0].function`), for the message.
pub fn tools(
    tools: &[Tool],
    field: &'static str,
    place: impl Fn(usize) -> String,
) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        if !valid_function_name(&tool.name) {
            return Err(ApiError::bad_request(format!(
                "{}.name '{}' must be 1 to 64 letters, digits, '_' or '-'",
                place(i),
                tool.name
            ))
            .with_param(field));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "{}.name '{}' is given twice",
                place(i),
                tool.name
            ))
            .with_param(field));
        }
    }
    Ok(())
}

/// A choice that asks for a call has tools to call, and a named tool is among them.
pub fn tool_choice(use_: &ToolUse, field: &'static str) -> Result<(), ApiError> {
    if use_.tools.is_empty() && matches!(use_.choice, ToolChoice::Required | ToolChoice::Named(_)) {
        return Err(ApiError::bad_request(format!(
            "'{field}' asks for a call but no tools are given"
        ))
        .with_param(field));
    }
    if let ToolChoice::Named(name) = &use_.choice {
        if !use_.tools.iter().any(|t| &t.name == name) {
            return Err(ApiError::bad_request(format!(
                "'{field}' names '{name}', which is not among the tools"
            ))
            .with_param(field));
        }
    }
    Ok(())
}

/// The grammars this request will run under can be built: a response format, and the
/// parameters of every tool whose call is forced or strict; and only one of the two holds (the
/// engine cannot enforce both at once).
pub fn enforceable(
    tools: Option<&ToolUse>,
    tools_field: &'static str,
    place: impl Fn(usize) -> String,
    grammar: Option<&Grammar>,
    grammar_field: &'static str,
) -> Result<(), ApiError> {
    if let Some(grammar) = grammar {
        grammar.check().map_err(|e| {
            ApiError::bad_request(format!("{grammar_field}: {e}")).with_param(grammar_field)
        })?;
    }
    let Some(tools) = tools.filter(|t| t.choice != ToolChoice::None) else {
        return Ok(());
    };
    let forced = matches!(tools.choice, ToolChoice::Required | ToolChoice::Named(_));
    if grammar.is_some() && (forced || tools.tools.iter().any(|t| t.strict)) {
        return Err(ApiError::bad_request(format!(
            "{grammar_field} cannot be enforced together with a required tool call or strict tools"
        ))
        .with_param(grammar_field));
    }
    for (i, tool) in tools
        .tools
        .iter()
        .enumerate()
        .filter(|(_, t)| forced || t.strict)
    {
        Grammar::JsonSchema(tool.parameters.clone())
            .check()
            .map_err(|e| {
                let why = if forced {
                    "a required call"
                } else {
                    "a strict tool"
                };
                ApiError::bad_request(format!("{} cannot be enforced ({why}): {e}", place(i)))
                    .with_param(tools_field)
            })?;
    }
    Ok(())
}
