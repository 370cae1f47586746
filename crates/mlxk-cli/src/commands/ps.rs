//! `mlxk ps`: the models a running server holds in memory.

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{json, Value};

use super::block_on;
use crate::human;
use crate::local_server::{LocalServer, ServerArgs};
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: &PsArgs, _output: &Output) -> Result<Outcome, CliError> {
    let server = LocalServer::find(&args.server)?;
    let answer = block_on(server.get("/api/ps"))??;
    let now = Utc::now();
    let models: Vec<Value> = answer["models"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            json!({
                "name": m["name"],
                "memory_bytes": m["size"],
                "loaded_at": m["loaded_at"],
                "expires_at": m["expires_at"],
            })
        })
        .collect();
    let text = if models.is_empty() {
        format!("No model is loaded (server at {}).", server.url)
    } else {
        let rows = models
            .iter()
            .map(|m| {
                vec![
                    m["name"].as_str().unwrap_or("?").to_string(),
                    m["memory_bytes"].as_u64().map_or("?".into(), human::size),
                    time(&m["loaded_at"]).map_or("?".into(), |t| human::age(t, now)),
                    until(time(&m["expires_at"]), now),
                ]
            })
            .collect();
        let table = human::table(&["NAME", "MEMORY", "LOADED", "UNLOADS"], rows, &["MEMORY"]);
        format!("{table}\nServer: {}", server.url)
    };
    Ok(Outcome::new(
        json!({"server": server.url, "models": models}),
        text,
    ))
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// When the model is let go: "in 4m", or why not.
fn until(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match expires {
        // Generating, or kept for ever (`serve --keep-alive 0`).
        None => "-".to_string(),
        Some(at) => match (at - now).num_seconds() {
            s if s < 60 => "in <1m".to_string(),
            s if s < 3600 => format!("in {}m", s / 60),
            s => format!("in {}h", s / 3600),
        },
    }
}
