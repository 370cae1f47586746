use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use mlxk_core::secrets::{SecretKind, SecretStore};
use mlxk_server::{start, ServerConfig, Stopped};
use serde_json::json;

use super::WeightArgs;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback exposes your models to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY`. Prefer MLXK_API_KEY or the key stored with
    /// --store-api-key: an argument is visible to other users in the process list.
    #[arg(long, env = "MLXK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read an API key from stdin (or a hidden prompt), keep it in the OS keyring for every
    /// later `serve` (and the app), and exit.
    #[arg(long, conflicts_with_all = ["api_key", "forget_api_key"])]
    pub store_api_key: bool,
    /// Remove the API key kept in the OS keyring, and exit.
    #[arg(long)]
    pub forget_api_key: bool,
    /// Serve on a non-loopback address without an API key.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Seconds an idle model stays loaded; 0 keeps it forever.
    #[arg(long, default_value_t = 300)]
    pub keep_alive: u64,
    /// Allow this browser origin (besides loopback ones); repeatable.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Answer requests that name this server by HOST (besides IP addresses and localhost), e.g.
    /// a name on your network; others are refused (DNS rebinding protection). Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// The most new tokens a request may ask for.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// Memory kept for the keys and values of earlier prompts, reused by prompts that start the
    /// same way (a conversation's next turn): e.g. `2GiB`, `512MB`; 0 turns it off. The text
    /// models in memory share it in equal parts. Default: an eighth of the memory, at most 4 GiB.
    #[arg(long, value_name = "SIZE", value_parser = mlxk_engine::load_plan::parse_budget)]
    pub prompt_cache_size: Option<u64>,
    /// Models kept in memory at once (text, embedding and speech-to-text models alike); the
    /// least recently used idle one goes when another needs its place.
    #[arg(long, default_value_t = 3)]
    pub max_loaded_models: usize,
    /// Memory the models kept may take together (each counted as its load plan's, with a
    /// margin), e.g. `12GiB`; a model needing more than this alone is refused. Default: three
    /// quarters of the memory, less the prompt cache's size.
    #[arg(long, value_name = "SIZE", value_parser = mlxk_engine::load_plan::parse_budget)]
    pub models_memory: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest audio file a transcription accepts (/v1/audio/*), in bytes: OpenAI's own limit.
    #[arg(long, default_value_t = 25 * 1024 * 1024)]
    pub max_audio_bytes: usize,
    /// Longest audio a transcription accepts, in seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub max_audio_seconds: f64,
    /// Open connections served at once (a few more slots stay reserved for /health).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, and then its body.
    #[arg(long, default_value_t = 30)]
    pub read_timeout: u64,
    /// Requests that may wait for a free generation slot; more get 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    pub queue_capacity: usize,
    /// Seconds a request may wait in the queue before it gets 503 with Retry-After.
    #[arg(long, default_value_t = 30)]
    pub queue_timeout: u64,
    /// Generations that run at once (a model decodes its generations together, one batch).
    #[arg(long, default_value_t = 8)]
    pub max_active: usize,
    /// Seconds a stop (Ctrl-C, SIGTERM) waits for running generations and the inference worker;
    /// past it the server exits without them.
    #[arg(long, default_value_t = 10)]
    pub shutdown_timeout: u64,
    /// Load this model at start, before any request asks for it (named as for `run`).
    #[arg(long = "model", value_name = "NAME")]
    pub preload: Option<String>,
    /// Log as JSON lines (to stderr) instead of text. Prompts, answers and keys are never logged.
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

pub fn run(args: &ServeArgs, _output: &Output) -> Result<Outcome, CliError> {
    if args.store_api_key || args.forget_api_key {
        return manage_stored_key(args.store_api_key);
    }
    if !(args.max_audio_seconds.is_finite() && args.max_audio_seconds > 0.0) {
        return Err(CliError::usage(format!(
            "--max-audio-seconds {}: give a number of seconds above 0",
            args.max_audio_seconds
        )));
    }
    // An empty MLXK_API_KEY is no key (the keyring's is used, else none).
    let given = args.api_key.as_deref().filter(|key| !key.trim().is_empty());
    let (api_key, key_source) = match given {
        Some(key) => (Some(key.to_string()), "--api-key or MLXK_API_KEY"),
        None => match stored_key() {
            Some(key) => (Some(key), "the keyring"),
            None => (None, ""),
        },
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MLXK_LOG").unwrap_or_else(|_| "info".into());
    // Colours only for a person at a terminal, never into a file or a journal.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let prompt_cache_bytes = args
        .prompt_cache_size
        .unwrap_or_else(mlxk_engine::prefix_cache::default_capacity);
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        api_key,
        keep_alive: Duration::from_secs(args.keep_alive),
        cors_origins: args.cors_origins.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
        max_tokens: args.max_tokens,
        max_body_bytes: args.max_body_bytes,
        max_audio_bytes: args.max_audio_bytes,
        max_audio_seconds: args.max_audio_seconds,
        max_connections: args.max_connections,
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        queue_capacity: args.queue_capacity.max(1),
        queue_timeout: Duration::from_secs(args.queue_timeout.max(1)),
        max_active: args.max_active.max(1),
        load_policy: args.weights.policy()?,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        prompt_cache_bytes,
        max_loaded_models: args.max_loaded_models.max(1),
        models_memory: args
            .models_memory
            .unwrap_or_else(|| ServerConfig::default_models_memory(prompt_cache_bytes)),
        cache: None,
    };
    config
        .check_exposure(args.insecure_no_auth)
        .map_err(|refused| {
            CliError::usage(format!(
                "{refused}; set MLXK_API_KEY, store one with --store-api-key, or pass --insecure-no-auth"
            ))
        })?;
    if config.is_exposed() {
        eprintln!(
            "WARNING: listening on {}: other machines can reach this server.",
            config.host
        );
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| CliError::new("server_error", e.to_string()))?;
    let stopped = runtime.block_on(async {
        let handle = start(config)
            .await
            .map_err(|e| CliError::new("server_error", e.to_string()))?;
        if let Some(name) = &args.preload {
            eprintln!("Loading {name}…");
            if let Err(e) = handle.preload(name).await {
                let _ = handle.stop().await;
                return Err(CliError::new(
                    "model_not_loaded",
                    format!("--model {name}: {e}"),
                ));
            }
        }
        eprintln!(
            "Serving the OpenAI-compatible API on http://{} (Ctrl-C stops)",
            handle.addr()
        );
        eprintln!("{}", paste_lines(handle.addr()));
        if !key_source.is_empty() {
            eprintln!("Requests need the API key (from {key_source}).");
        }
        // Where `mlxk ps` and `mlxk stop` find this server.
        crate::local_server::record(&format!("http://{}", handle.addr()));
        wait_for_signal().await;
        crate::local_server::forget();
        eprintln!("Stopping...");
        Ok::<_, CliError>(handle.stop().await)
    })?;
    // A worker left behind must not hold the process: it ends with it.
    runtime.shutdown_background();
    if stopped == Stopped::WorkerAbandoned {
        return Err(CliError::new(
            "server_error",
            format!(
                "stopped without the inference worker: it did not finish within {} s (a model's chat template or a computation is stuck)",
                args.shutdown_timeout
            ),
        ));
    }
    Ok(Outcome::new(json!({"status": "stopped"}), String::new()))
}

/// The base URL to paste into a client, and a request to try with a model that can run.
fn paste_lines(addr: std::net::SocketAddr) -> String {
    let model = mlxk_core::Library::from_env()
        .list()
        .ok()
        .and_then(|models| {
            models
                .into_iter()
                .find(|m| m.runtime.compatible && m.workspace.is_none())
        })
        .map_or_else(|| "MODEL".to_string(), |m| m.name);
    let body =
        format!(r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}"#);
    format!(
        "  OpenAI base URL: http://{addr}/v1\n  Try: curl -s http://{addr}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'"
    )
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The server key kept in the OS keyring, if a keyring is reachable and holds one.
pub fn stored_key() -> Option<String> {
    let store = SecretStore::platform().ok()?;
    let key = store.get(SecretKind::ServerApiKey).ok()??;
    Some(key.expose().to_string())
}

fn manage_stored_key(store_it: bool) -> Result<Outcome, CliError> {
    let store = SecretStore::platform()?;
    if store_it {
        let key = super::login::read_secret(
            false,
            "API key for mlxk serve (input is hidden): ",
            "no API key given",
        )?;
        store.set(SecretKind::ServerApiKey, &key)?;
        Ok(Outcome::new(
            json!({"api_key": "stored"}),
            "API key stored in the keyring; `mlxk serve` now requires it.".into(),
        ))
    } else {
        let removed = store.delete(SecretKind::ServerApiKey)?;
        let text = if removed {
            "API key removed from the keyring."
        } else {
            "No API key was stored."
        };
        Ok(Outcome::new(
            json!({"api_key": if removed { "removed" } else { "none" }}),
            text.into(),
        ))
    }
}
