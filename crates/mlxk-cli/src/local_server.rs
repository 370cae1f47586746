//! Talking to a server of ours that already runs (`mlxk ps`, `mlxk stop`): where it is, with
//! which key, and its answers. `mlxk serve` records its address where these commands look.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::output::CliError;

/// How long a short question (`ps`, `stop`: a load or unload included) may take.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a running server is found unless told.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server to ask [default: the one `mlxk serve` last started, else
    /// http://127.0.0.1:8000].
    #[arg(long, env = "MLXK_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

/// The folder for mlxk's own state: `$XDG_STATE_HOME/mlxk`, else `~/.local/state/mlxk`.
pub fn state_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(state.join("mlxk"))
}

fn record_file() -> Option<PathBuf> {
    state_dir().map(|dir| dir.join("server.json"))
}

/// Notes where `mlxk serve` listens, for `ps` and `stop`; a failure only costs that.
pub fn record(base_url: &str) {
    let Some(file) = record_file() else { return };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let body = serde_json::json!({"url": base_url, "pid": std::process::id()});
    let _ = std::fs::write(file, body.to_string());
}

/// Forgets the record at a stop, unless a newer server wrote its own since.
pub fn forget() {
    let Some(file) = record_file() else { return };
    let ours = std::fs::read_to_string(&file)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|record| record["pid"] == std::process::id());
    if ours {
        let _ = std::fs::remove_file(file);
    }
}

/// A server to ask: its base URL and the key it may want.
pub struct LocalServer {
    pub url: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl LocalServer {
    pub fn find(args: &ServerArgs) -> Result<LocalServer, CliError> {
        let url = match &args.server {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => record_file()
                .and_then(|file| std::fs::read_to_string(file).ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|record| record["url"].as_str().map(str::to_string))
                .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
        };
        // The key `mlxk serve` would use: MLXK_API_KEY, else the one kept in the keyring; the
        // keyring's goes to this machine only, never to a server named elsewhere.
        let key = std::env::var("MLXK_API_KEY")
            .ok()
            .filter(|key| !key.trim().is_empty())
            .or_else(|| {
                is_loopback(&url)
                    .then(crate::commands::serve::stored_key)
                    .flatten()
            });
        let client = reqwest::Client::builder()
            // Only ever this machine's (or the named) server: no proxy in between.
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            // Between two pieces of an answer; a long answer as a whole may take its time.
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| CliError::new("server_error", e.to_string()))?;
        Ok(LocalServer { url, key, client })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        let request = self.client.get(format!("{}{path}", self.url));
        self.send(request.timeout(QUESTION_TIMEOUT)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self.client.post(format!("{}{path}", self.url)).json(body);
        self.send(request.timeout(QUESTION_TIMEOUT)).await
    }

    /// Posts `body` and hands back the answer as it arrives (a stream), once its status is OK.
    pub async fn stream(&self, path: &str, body: &Value) -> Result<reqwest::Response, CliError> {
        self.answer(self.client.post(format!("{}{path}", self.url)).json(body))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let response = self.answer(request).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CliError> {
        let request = match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            let mut error = CliError::new(
                "server_not_running",
                format!(
                    "no mlxk server answers at {} ({})",
                    self.url,
                    root_cause(&e)
                ),
            );
            error.hint = Some("start one with: mlxk serve (or name it with --server URL)".into());
            error
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // Ollama's shape (`{"error": "…"}`) or OpenAI's (`{"error": {"message": …}}`).
        let message = body["error"]
            .as_str()
            .or_else(|| body["error"]["message"].as_str())
            .unwrap_or("no reason given")
            .to_string();
        let kind = match status.as_u16() {
            401 => "unauthorized",
            404 => "model_not_found",
            _ => "server_error",
        };
        let mut error = CliError::new(
            kind,
            format!("the server at {} answered {status}: {message}", self.url),
        );
        if status.as_u16() == 401 {
            error.hint = Some("set MLXK_API_KEY to the server's key".into());
        }
        Err(error)
    }
}

/// Whether `url` names this machine (a loopback address or localhost).
fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_machines_servers_get_the_keyrings_key() {
        for url in [
            "http://127.0.0.1:8000",
            "http://localhost:1",
            "http://[::1]:8000",
        ] {
            assert!(super::is_loopback(url), "{url}");
        }
        for url in [
            "http://192.168.1.5:8000",
            "https://example.com",
            "not a url",
        ] {
            assert!(!super::is_loopback(url), "{url}");
        }
    }
}
