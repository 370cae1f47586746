use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use mlxk_server::{start, ServerConfig};
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
    /// Require `Authorization: Bearer KEY` (also read from MLXK_API_KEY).
    #[arg(long, env = "MLXK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve on a non-loopback address without an API key.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Seconds an idle model stays loaded; 0 keeps it forever.
    #[arg(long, default_value_t = 300)]
    pub keep_alive: u64,
    /// Allow this browser origin (besides loopback ones); repeatable.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// The most new tokens a request may ask for.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Log as JSON lines (to stderr) instead of text. Prompts, answers and keys are never logged.
    #[arg(long)]
    pub log_json: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

pub fn run(args: &ServeArgs, _output: &Output) -> Result<Outcome, CliError> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MLXK_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    if !args.host.is_loopback() {
        if args.api_key.is_none() && !args.insecure_no_auth {
            return Err(CliError::usage(format!(
                "refusing to listen on {} without an API key: anyone on the network could use your models; \
                 set --api-key (or MLXK_API_KEY), or pass --insecure-no-auth",
                args.host
            )));
        }
        eprintln!(
            "WARNING: listening on {}: other machines can reach this server.",
            args.host
        );
    }
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key.clone(),
        keep_alive: Duration::from_secs(args.keep_alive),
        cors_origins: args.cors_origins.clone(),
        max_tokens: args.max_tokens,
        max_body_bytes: args.max_body_bytes,
        load_policy: args.weights.policy()?,
        ..ServerConfig::default()
    };
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| CliError::new("server_error", e.to_string()))?;
    runtime.block_on(async {
        let handle = start(config)
            .await
            .map_err(|e| CliError::new("server_error", e.to_string()))?;
        eprintln!(
            "Serving the OpenAI-compatible API on http://{} (Ctrl-C stops)",
            handle.addr()
        );
        wait_for_signal().await;
        eprintln!("Stopping...");
        handle.stop().await;
        Ok::<_, CliError>(())
    })?;
    Ok(Outcome::new(json!({"status": "stopped"}), String::new()))
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
