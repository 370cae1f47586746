//! `mlxk logout`: remove the Hugging Face token from the OS keyring.

use clap::Args;
use mlxk_core::hub::{find_token, TokenSource, TokenSources};
use mlxk_core::secrets::{SecretError, SecretKind, SecretStore};
use serde_json::json;

use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct LogoutArgs {}

pub fn run(_args: &LogoutArgs, _output: &Output) -> Result<Outcome, CliError> {
    let removed = SecretStore::platform()?.delete(SecretKind::HubToken)?;
    let mut lines = vec![if removed {
        "Logged out: the Hugging Face token was removed from the keyring".to_string()
    } else {
        "No Hugging Face token was stored in the keyring".to_string()
    }];
    let sources = TokenSources::from_env();
    let remaining = remaining_sources(&sources);
    for source in &remaining {
        lines.push(match source {
            TokenSource::Environment => {
                "Note: HF_TOKEN is still set, and mlxk uses it; unset it to log out completely."
                    .to_string()
            }
            _ => format!(
                "Note: {} still holds a token, and mlxk uses it; delete it to log out completely.",
                sources.token_file.display()
            ),
        });
    }
    let data = json!({
        "removed": removed,
        "remaining_sources": remaining,
        "token_file": sources.token_file,
    });
    Ok(Outcome::new(data, lines.join("\n")))
}

/// The sources besides the keyring that still provide a token.
fn remaining_sources(sources: &TokenSources) -> Vec<TokenSource> {
    let file_only = TokenSources {
        keyring: Err(SecretError::Unavailable("not consulted".into())),
        env_token: None,
        token_file: sources.token_file.clone(),
    };
    let mut remaining = Vec::new();
    if sources.env_token.is_some() {
        remaining.push(TokenSource::Environment);
    }
    if find_token(&file_only).token.is_some() {
        remaining.push(TokenSource::TokenFile);
    }
    remaining
}
