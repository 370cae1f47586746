use std::net::IpAddr;
use std::time::Duration;

use mlxk_core::HubCache;
use mlxk_engine::LoadPolicy;

/// Bytes an audio upload's body may hold beyond the file: `model`, `prompt` and the other
/// fields, and the multipart boundaries.
const AUDIO_FORM_ROOM: usize = 1024 * 1024;

/// How the server runs. `Default` is what `mlxk serve` uses without flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port (see [`crate::ServerHandle::addr`]).
    pub port: u16,
    /// When set, every `/v1` request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Unload a model after this long without requests for it; zero keeps models loaded.
    pub keep_alive: Duration,
    /// Origins allowed by CORS besides loopback ones.
    pub cors_origins: Vec<String>,
    /// Host names the server answers to besides IP addresses and `localhost` (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: usize,
    /// The largest audio file `/v1/audio/transcriptions|translations` take (OpenAI's limit is
    /// 25 MB); their multipart bodies may be this much larger than `max_body_bytes`.
    pub max_audio_bytes: usize,
    /// The longest audio, in seconds, those routes transcribe.
    pub max_audio_seconds: f64,
    /// Open connections served at once (a few more slots stay reserved for `/health`).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and then its body.
    pub read_timeout: Duration,
    /// Requests waiting for the worker beyond the active ones; more get 503.
    pub queue_capacity: usize,
    /// How long a request may wait in the queue before it gets a 503 (with Retry-After).
    pub queue_timeout: Duration,
    /// Generations decoded together (per model, in one batch), at most.
    pub max_active: usize,
    /// The most new tokens a request may ask for (and the default).
    pub max_tokens: usize,
    /// How models are laid out in memory on this device (dense float32 on the CPU).
    pub load_policy: LoadPolicy,
    /// The Hugging Face cache served; `None` reads `HF_HOME` / `HF_HUB_CACHE` once at start.
    pub cache: Option<HubCache>,
    /// How long a stop waits for the inference worker (a model's chat template or a computation
    /// can be stuck); past it the server stops without the worker.
    pub shutdown_timeout: Duration,
    /// Bytes of keys and values kept for prompts that start as earlier ones did (0: none);
    /// the text models held share it.
    pub prompt_cache_bytes: u64,
    /// Models held in memory at once, of every kind; the least recently used idle one goes
    /// when another needs its place.
    pub max_loaded_models: usize,
    /// The memory the models held may take together (each counted as its load plan's, with
    /// the margin for the runtime); a model that needs more than this alone is refused.
    pub models_memory: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            api_key: None,
            keep_alive: Duration::from_secs(300),
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_audio_bytes: 25 * 1024 * 1024,
            max_audio_seconds: 3600.0,
            max_connections: 512,
            read_timeout: Duration::from_secs(30),
            queue_capacity: 32,
            queue_timeout: Duration::from_secs(30),
            max_active: 8,
            max_tokens: 2048,
            load_policy: LoadPolicy::default(),
            shutdown_timeout: Duration::from_secs(10),
            prompt_cache_bytes: mlxk_engine::prefix_cache::default_capacity(),
            max_loaded_models: 3,
            models_memory: ServerConfig::default_models_memory(
                mlxk_engine::prefix_cache::default_capacity(),
            ),
            cache: None,
        }
    }
}

impl ServerConfig {
    /// The models' memory budget when none is given: three quarters of the memory, less what
    /// the prompt cache may hold.
    pub fn default_models_memory(prompt_cache_bytes: u64) -> u64 {
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        (system.total_memory() / 4 * 3).saturating_sub(prompt_cache_bytes)
    }

    /// Anything but loopback: other machines can reach the models.
    pub fn is_exposed(&self) -> bool {
        !self.host.is_loopback()
    }

    /// The key requests must carry. A blank one (an empty `MLXK_API_KEY`) is no key: it would
    /// otherwise let anyone in who sends an empty bearer token.
    pub fn required_key(&self) -> Option<&str> {
        self.api_key.as_deref().filter(|key| !key.trim().is_empty())
    }

    /// The body limit of the audio routes: the file plus room for the other form fields and
    /// the multipart framing.
    pub fn max_audio_body_bytes(&self) -> usize {
        self.max_audio_bytes.saturating_add(AUDIO_FORM_ROOM)
    }

    /// The limits an uploaded audio file is decoded within.
    pub fn audio_limits(&self) -> mlxk_audio::Limits {
        mlxk_audio::Limits {
            max_bytes: self.max_audio_bytes as u64,
            max_seconds: self.max_audio_seconds,
        }
    }

    /// Refuses to serve other machines without an API key unless the person explicitly
    /// allowed it (`mlxk serve --insecure-no-auth`, the app's setting).
    pub fn check_exposure(&self, allow_without_key: bool) -> Result<(), UnprotectedExposure> {
        if self.is_exposed() && self.required_key().is_none() && !allow_without_key {
            return Err(UnprotectedExposure { host: self.host });
        }
        Ok(())
    }
}

/// A non-loopback address without an API key, not explicitly allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to listen on {host} without an API key: anyone on the network could use your models"
)]
pub struct UnprotectedExposure {
    pub host: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(host: [u8; 4], api_key: Option<&str>) -> ServerConfig {
        ServerConfig {
            host: IpAddr::from(host),
            api_key: api_key.map(str::to_string),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn only_an_exposed_host_without_a_key_needs_explicit_consent() {
        assert!(on([127, 0, 0, 1], None).check_exposure(false).is_ok());
        assert!(on([0, 0, 0, 0], Some("k")).check_exposure(false).is_ok());
        assert!(on([0, 0, 0, 0], None).check_exposure(true).is_ok());
        // A blank key protects nothing.
        for blank in ["", "  "] {
            let config = on([0, 0, 0, 0], Some(blank));
            assert!(config.check_exposure(false).is_err(), "{blank:?}");
            assert_eq!(config.required_key(), None);
        }
        let refused = on([0, 0, 0, 0], None).check_exposure(false).unwrap_err();
        assert!(refused.to_string().contains("0.0.0.0 without an API key"));
        assert!(ServerConfig::default().host.is_loopback());
        assert!(on([192, 168, 1, 2], None).is_exposed());
    }
}
