//! The base URLs a person pastes into a client: one per API the server speaks on its one port,
//! derived from the address it actually bound. This is the only place they are made: the
//! windows receive them in [`ServerStatus::Running`](crate::server::ServerStatus), the tray
//! copies them, and the chat pane talks to the OpenAI one.
//!
//! A server listening on every interface (`0.0.0.0`, `::`) is given as loopback (`127.0.0.1`,
//! `[::1]`): a client cannot connect to "every interface", and the URL then works for the
//! clients on this machine, where it is pasted most; other devices put this machine's network
//! address in its place (the status says so with `every_interface`). IPv6 hosts are bracketed,
//! a zone written `%25` as in RFC 6874.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// An API the server speaks, as its clients know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum ClientApi {
    /// Chat Completions, Responses, Embeddings, Models: clients take the `/v1` prefix.
    Openai,
    /// Messages: clients append `/v1/messages` to the bare root.
    Anthropic,
    /// `/api/chat`, `/api/tags`…: clients append them to the bare root.
    Ollama,
}

impl ClientApi {
    pub const ALL: [ClientApi; 3] = [ClientApi::Openai, ClientApi::Anthropic, ClientApi::Ollama];

    pub fn name(self) -> &'static str {
        match self {
            ClientApi::Openai => "OpenAI",
            ClientApi::Anthropic => "Anthropic",
            ClientApi::Ollama => "Ollama",
        }
    }

    /// What this API's clients expect after the server's root in their base URL.
    fn base_path(self) -> &'static str {
        match self {
            ClientApi::Openai => "/v1",
            ClientApi::Anthropic | ClientApi::Ollama => "",
        }
    }

    /// The clients a person will recognise, to know which URL is theirs.
    fn used_by(self) -> &'static str {
        match self {
            ClientApi::Openai => "OpenAI SDKs, Codex (Responses API)",
            ClientApi::Anthropic => "Claude Code, Anthropic SDKs",
            ClientApi::Ollama => "Ollama clients, Open WebUI, VS Code",
        }
    }
}

/// The base URL for the clients of one API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct ClientUrl {
    pub api: ClientApi,
    /// "OpenAI", "Anthropic", "Ollama".
    pub name: String,
    /// What to paste, e.g. `http://127.0.0.1:8000/v1`.
    pub url: String,
    /// Who takes it, e.g. "Claude Code, Anthropic SDKs".
    pub used_by: String,
}

/// The base URL of every API for a server bound to `bound`, in [`ClientApi::ALL`]'s order.
pub fn client_urls(bound: SocketAddr) -> Vec<ClientUrl> {
    let root = root_url(bound);
    ClientApi::ALL
        .into_iter()
        .map(|api| ClientUrl {
            api,
            name: api.name().into(),
            url: format!("{root}{}", api.base_path()),
            used_by: api.used_by().into(),
        })
        .collect()
}

/// `http://host:port` as a client on this machine connects to a server bound to `bound`.
fn root_url(bound: SocketAddr) -> String {
    let port = bound.port();
    match bound {
        SocketAddr::V4(v4) => {
            let ip = if v4.ip().is_unspecified() {
                Ipv4Addr::LOCALHOST
            } else {
                *v4.ip()
            };
            format!("http://{ip}:{port}")
        }
        SocketAddr::V6(v6) => {
            let ip = if v6.ip().is_unspecified() {
                Ipv6Addr::LOCALHOST
            } else {
                *v6.ip()
            };
            let zone = match v6.scope_id() {
                0 => String::new(),
                id => format!("%25{id}"),
            };
            format!("http://[{ip}{zone}]:{port}")
        }
    }
}

/// Whether the server listens on every interface, so that [`client_urls`] name loopback while
/// other devices need this machine's network address.
pub fn every_interface(bound: SocketAddr) -> bool {
    bound.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(bound: &str) -> Vec<(ClientApi, String)> {
        client_urls(bound.parse().unwrap())
            .into_iter()
            .map(|u| (u.api, u.url))
            .collect()
    }

    #[test]
    fn openai_takes_the_v1_prefix_anthropic_and_ollama_the_bare_root() {
        assert_eq!(
            urls("127.0.0.1:8000"),
            [
                (ClientApi::Openai, "http://127.0.0.1:8000/v1".to_string()),
                (ClientApi::Anthropic, "http://127.0.0.1:8000".to_string()),
                (ClientApi::Ollama, "http://127.0.0.1:8000".to_string()),
            ]
        );
    }

    #[test]
    fn every_interface_is_given_as_loopback_and_a_specific_address_as_it_is() {
        assert_eq!(urls("0.0.0.0:9000")[0].1, "http://127.0.0.1:9000/v1");
        assert_eq!(urls("[::]:9000")[0].1, "http://[::1]:9000/v1");
        assert_eq!(urls("192.168.1.20:8000")[2].1, "http://192.168.1.20:8000");
        assert!(every_interface("0.0.0.0:9000".parse().unwrap()));
        assert!(every_interface("[::]:9000".parse().unwrap()));
        assert!(!every_interface("192.168.1.20:8000".parse().unwrap()));
        assert!(!every_interface("127.0.0.1:8000".parse().unwrap()));
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_a_zone_is_escaped() {
        assert_eq!(urls("[::1]:8000")[0].1, "http://[::1]:8000/v1");
        assert_eq!(urls("[fd00::5]:8000")[1].1, "http://[fd00::5]:8000");
        assert_eq!(urls("[fe80::1%2]:8000")[2].1, "http://[fe80::1%252]:8000");
    }

    #[test]
    fn each_url_says_who_uses_it() {
        let all = client_urls("127.0.0.1:8000".parse().unwrap());
        let names: Vec<&str> = all.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["OpenAI", "Anthropic", "Ollama"]);
        assert!(all[0].used_by.contains("Codex"));
        assert!(all[1].used_by.contains("Claude Code"));
        assert!(all[2].used_by.contains("Open WebUI"));
    }
}
