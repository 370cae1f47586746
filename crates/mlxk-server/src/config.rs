use std::net::IpAddr;
use std::time::Duration;

use mlxk_engine::LoadPolicy;

/// How the server runs. `Default` is what `mlxk serve` uses without flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port (see [`crate::ServerHandle::addr`]).
    pub port: u16,
    /// When set, every `/v1` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Unload the model after this long without requests; zero keeps it loaded.
    pub keep_alive: Duration,
    /// Origins allowed by CORS besides loopback ones.
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Requests waiting for the worker beyond the active ones; more get 503.
    pub queue_capacity: usize,
    /// Generations stepped together, token by token.
    pub max_active: usize,
    /// The most new tokens a request may ask for (and the default).
    pub max_tokens: usize,
    /// How models are laid out in memory on this device (dense float32 on the CPU).
    pub load_policy: LoadPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            api_key: None,
            keep_alive: Duration::from_secs(300),
            cors_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            queue_capacity: 32,
            max_active: 8,
            max_tokens: 2048,
            load_policy: LoadPolicy::default(),
        }
    }
}
