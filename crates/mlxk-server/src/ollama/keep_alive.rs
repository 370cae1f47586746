//! Ollama's `keep_alive`: how long the model stays in memory after this request, as seconds
//! (a number) or a Go duration (`"5m"`, `"1h30m"`, `"0"`); negative keeps it for ever, zero
//! lets it go as soon as its answers end.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ApiError;
use crate::worker::KeepAlive;

/// Longer than this is for ever: no later date is useful.
const FOREVER_SECONDS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeepAliveField {
    Seconds(f64),
    Text(String),
}

impl KeepAliveField {
    pub fn parse(&self) -> Result<KeepAlive, ApiError> {
        let seconds = match self {
            KeepAliveField::Seconds(seconds) => Some(*seconds),
            KeepAliveField::Text(text) => go_duration_seconds(text.trim()),
        };
        match seconds {
            Some(s) if s.is_nan() => None,
            Some(s) if !(0.0..FOREVER_SECONDS).contains(&s) => Some(KeepAlive::Forever),
            Some(s) => Some(KeepAlive::For(Duration::from_secs_f64(s))),
            None => None,
        }
        .ok_or_else(|| {
            let given = match self {
                KeepAliveField::Seconds(s) => s.to_string(),
                KeepAliveField::Text(t) => format!("\"{t}\""),
            };
            ApiError::bad_request(format!(
                "'keep_alive' is {given}: give seconds, or a duration such as \"5m\" or \"1h30m\" (negative keeps the model for ever, 0 unloads it after the answer)"
            ))
            .with_param("keep_alive")
        })
    }
}

/// A request's `keep_alive`; absent, the server's, as Ollama gives a model its default.
pub fn requested(field: Option<&KeepAliveField>) -> Result<KeepAlive, ApiError> {
    Ok(field
        .map(KeepAliveField::parse)
        .transpose()?
        .unwrap_or(KeepAlive::Server))
}

/// A Go duration (`time.ParseDuration`: an optional sign, then numbers each with a unit of
/// `ns`, `us`, `µs`, `ms`, `s`, `m` or `h`), in seconds; a bare number is seconds too.
fn go_duration_seconds(text: &str) -> Option<f64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(seconds);
    }
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|end| *end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: serde_json::Value) -> Result<KeepAlive, ApiError> {
        serde_json::from_value::<KeepAliveField>(value)
            .unwrap()
            .parse()
    }

    #[test]
    fn numbers_and_go_durations_as_ollama_reads_them() {
        use serde_json::json;
        let cases = [
            (json!(0), KeepAlive::For(Duration::ZERO)),
            (json!("0"), KeepAlive::For(Duration::ZERO)),
            (json!("0s"), KeepAlive::For(Duration::ZERO)),
            (json!(30), KeepAlive::For(Duration::from_secs(30))),
            (json!(1.5), KeepAlive::For(Duration::from_millis(1500))),
            (json!("300"), KeepAlive::For(Duration::from_secs(300))),
            (json!("5m"), KeepAlive::For(Duration::from_secs(300))),
            (json!("1h30m"), KeepAlive::For(Duration::from_secs(5400))),
            (json!("1.5h"), KeepAlive::For(Duration::from_secs(5400))),
            (json!("250ms"), KeepAlive::For(Duration::from_millis(250))),
            (json!(-1), KeepAlive::Forever),
            (json!("-1m"), KeepAlive::Forever),
            (json!("1000000h"), KeepAlive::Forever),
        ];
        for (given, expected) in cases {
            assert_eq!(parse(given.clone()).unwrap(), expected, "{given}");
        }
        for bad in ["", "5 minutes", "m", "5x", "1h-3m", "-"] {
            let error = parse(json!(bad)).unwrap_err();
            assert_eq!(error.param, Some("keep_alive"), "{bad}");
            assert!(error.message.contains("5m"), "{}", error.message);
        }
    }
}
