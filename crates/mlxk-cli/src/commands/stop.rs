//! `mlxk stop MODEL`: a running server lets go of a model (now, or once its answers end).

use clap::Args;
use serde_json::json;

use super::block_on;
use crate::local_server::{LocalServer, ServerArgs};
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The model to unload, named as for `run`.
    pub model: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: &StopArgs, _output: &Output) -> Result<Outcome, CliError> {
    let server = LocalServer::find(&args.server)?;
    // Ollama's way (what `ollama stop` sends): an empty generate with keep_alive 0.
    let answer = block_on(server.post(
        "/api/generate",
        &json!({"model": args.model, "keep_alive": 0}),
    ))??;
    let name = answer["model"].as_str().unwrap_or(&args.model).to_string();
    let unloaded = answer["unloaded"].as_str().unwrap_or("now").to_string();
    let text = match unloaded.as_str() {
        "not_loaded" => format!("{name} was not loaded (server at {}).", server.url),
        "when_idle" => format!(
            "{name} is answering: it is unloaded once its answers end, unless a new request comes first (server at {}).",
            server.url
        ),
        _ => format!("Unloaded {name} (server at {}).", server.url),
    };
    Ok(Outcome::new(
        json!({
            "model": name,
            "server": server.url,
            "was_loaded": unloaded != "not_loaded",
            "unloaded": unloaded,
        }),
        text,
    ))
}
