//! `mlxk whoami`: which Hugging Face account the token in use belongs to, and where it came from.

use clap::Args;
use mlxk_core::hub::{
    find_token, HubClient, HubError, TokenLookup, TokenSources, DEFAULT_ENDPOINT,
};
use serde_json::json;

use super::block_on;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct WhoamiArgs {}

pub fn run(_args: &WhoamiArgs, _output: &Output) -> Result<Outcome, CliError> {
    let sources = TokenSources::from_env();
    let lookup = find_token(&sources);
    let Some(found) = lookup.token.as_ref() else {
        return Err(not_logged_in(&sources, &lookup));
    };
    let client = HubClient::from_env(Some(found.token.clone()))?;
    let user = block_on(client.whoami())?.map_err(|e| match e {
        HubError::Unauthorized { endpoint, .. } => CliError::new(
            "unauthorized",
            format!(
                "the Hub at {endpoint} does not accept the token from {} (invalid, expired or revoked)",
                found.source.describe()
            ),
        ),
        other => CliError::from(other),
    })?;
    let mut lines = vec![format!(
        "Logged in as {} (token from {})",
        user.name,
        found.source.describe()
    )];
    if !user.orgs.is_empty() {
        let orgs: Vec<&str> = user.orgs.iter().map(|o| o.name.as_str()).collect();
        lines.push(format!("orgs: {}", orgs.join(", ")));
    }
    if client.endpoint() != DEFAULT_ENDPOINT {
        lines.push(format!("Hub: {}", client.endpoint()));
    }
    let data = json!({
        "user": user,
        "token_source": found.source,
        "endpoint": client.endpoint(),
    });
    Ok(Outcome::new(data, lines.join("\n")))
}

fn not_logged_in(sources: &TokenSources, lookup: &TokenLookup) -> CliError {
    let mut err = CliError::new(
        "not_logged_in",
        format!(
            "not logged in: no Hugging Face token in the keyring, HF_TOKEN or {}",
            sources.token_file.display()
        ),
    );
    let mut hint: Vec<String> = lookup
        .skipped
        .iter()
        .map(|(source, why)| format!("{} was skipped: {why}", source.describe()))
        .collect();
    err.extra.push((
        "skipped",
        json!(lookup
            .skipped
            .iter()
            .map(|(source, why)| json!({"source": source, "reason": why}))
            .collect::<Vec<_>>()),
    ));
    hint.push("log in with: mlxk login".into());
    err.hint = Some(hint.join("\n"));
    err
}
