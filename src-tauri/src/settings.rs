//! The app's own settings (how to run the server), kept as JSON in the app's config folder.
//! Secrets are not here: the token and the API key live in the OS keyring.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use mlxk_engine::LoadPolicy;
use mlxk_server::ServerConfig;
use serde::{Deserialize, Serialize};

use crate::error::{CommandError, CommandResult};

/// Server settings as the Settings window edits them. They apply when the server (re)starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(default)]
pub struct ServerSettings {
    /// The address to listen on; anything but loopback exposes the models to the network.
    pub host: String,
    pub port: u16,
    /// Seconds an idle model stays loaded; 0 keeps it.
    pub keep_alive_secs: u32,
    /// Browser origins allowed besides loopback ones.
    pub cors_origins: Vec<String>,
    /// Serve a non-loopback host without an API key (as `mlxk serve --insecure-no-auth`).
    pub insecure_no_auth: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        let defaults = ServerConfig::default();
        ServerSettings {
            host: defaults.host.to_string(),
            port: defaults.port,
            keep_alive_secs: defaults.keep_alive.as_secs() as u32,
            cors_origins: defaults.cors_origins,
            insecure_no_auth: false,
        }
    }
}

impl ServerSettings {
    pub fn host_ip(&self) -> CommandResult<IpAddr> {
        self.host.trim().parse().map_err(|_| {
            CommandError::new(
                "invalid_settings",
                format!("'{}' is not an IP address (e.g. 127.0.0.1)", self.host),
            )
        })
    }

    /// Whether other machines could reach the server (the host is not loopback).
    pub fn is_exposed(&self) -> bool {
        self.host_ip().is_ok_and(|ip| !ip.is_loopback())
    }

    /// Checks the values a person typed; the settings are stored only when this passes.
    pub fn validate(&self) -> CommandResult<()> {
        self.host_ip()?;
        for origin in &self.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(CommandError::new(
                    "invalid_settings",
                    format!("CORS origin '{origin}' must start with http:// or https://"),
                ));
            }
        }
        Ok(())
    }

    /// The server's configuration, with the API key from the keyring. Like `mlxk serve`, a
    /// non-loopback host without a key is refused unless `insecure_no_auth`.
    pub fn server_config(&self, api_key: Option<String>) -> CommandResult<ServerConfig> {
        let load_policy = LoadPolicy::for_this_machine(None)
            .map_err(|e| CommandError::new("invalid_settings", e.to_string()))?;
        let config = ServerConfig {
            host: self.host_ip()?,
            port: self.port,
            api_key,
            keep_alive: Duration::from_secs(self.keep_alive_secs.into()),
            cors_origins: self.cors_origins.clone(),
            load_policy,
            ..ServerConfig::default()
        };
        config
            .check_exposure(self.insecure_no_auth)
            .map_err(|refused| {
                CommandError::new(
                    "api_key_required",
                    format!("{refused}; set an API key in Settings, or allow serving without one"),
                )
            })?;
        Ok(config)
    }

    /// The stored settings; defaults when the file is missing or unreadable (a broken file
    /// must not keep the app from starting).
    pub fn load(path: &Path) -> ServerSettings {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> CommandResult<()> {
        let io = |e: std::io::Error| {
            CommandError::new(
                "io_error",
                format!("cannot save the settings to {}: {e}", path.display()),
            )
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).expect("settings serialize");
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, text).map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_cli_defaults() {
        let s = ServerSettings::default();
        assert_eq!(
            (s.host.as_str(), s.port, s.keep_alive_secs),
            ("127.0.0.1", 8000, 300)
        );
        assert!(!s.is_exposed());
    }

    #[test]
    fn exposed_host_needs_a_key_or_explicit_consent() {
        let mut s = ServerSettings {
            host: "0.0.0.0".into(),
            ..ServerSettings::default()
        };
        assert!(s.is_exposed());
        assert_eq!(s.server_config(None).unwrap_err().kind, "api_key_required");
        assert!(s.server_config(Some("k".into())).is_ok());
        s.insecure_no_auth = true;
        assert!(s.server_config(None).is_ok());
    }

    #[test]
    fn bad_values_are_refused() {
        let host = ServerSettings {
            host: "localhost:80".into(),
            ..ServerSettings::default()
        };
        assert_eq!(host.validate().unwrap_err().kind, "invalid_settings");
        let origin = ServerSettings {
            cors_origins: vec!["example.com".into()],
            ..ServerSettings::default()
        };
        assert_eq!(origin.validate().unwrap_err().kind, "invalid_settings");
    }

    #[test]
    fn saved_settings_load_back_and_a_broken_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/settings.json");
        let s = ServerSettings {
            port: 9123,
            ..ServerSettings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(ServerSettings::load(&path), s);
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(ServerSettings::load(&path), ServerSettings::default());
    }
}
