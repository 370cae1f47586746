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
    let loaded_before = block_on(server.get("/api/ps"))??;
    // Ollama's way (what `ollama stop` sends): an empty generate with keep_alive 0.
    let answer = block_on(server.post(
        "/api/generate",
        &json!({"model": args.model, "keep_alive": 0}),
    ))??;
    let name = answer["model"].as_str().unwrap_or(&args.model).to_string();
    let was_loaded = loaded_before["models"]
        .as_array()
        .is_some_and(|models| models.iter().any(|m| m["name"] == name.as_str()));
    let text = if was_loaded {
        format!("Unloaded {name} (server at {}).", server.url)
    } else {
        format!("{name} was not loaded (server at {}).", server.url)
    };
    Ok(Outcome::new(
        json!({"model": name, "server": server.url, "was_loaded": was_loaded}),
        text,
    ))
}
