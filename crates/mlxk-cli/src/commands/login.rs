//! `mlxk login`: check a Hugging Face token with the Hub, then keep it in the OS keyring.

use std::io::{self, Read};

use clap::Args;
use mlxk_core::hub::{HubClient, HubError};
use mlxk_core::secrets::{Secret, SecretKind, SecretStore};
use serde_json::json;

use super::block_on;
use crate::output::{stdin_is_terminal, CliError, Outcome, Output};

/// More than any token needs; stops a wrong pipe from filling memory.
const MAX_TOKEN_INPUT: u64 = 8 * 1024;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Read the token from stdin (the default when stdin is not a terminal); otherwise it is
    /// asked for without echo. It is never taken as an argument.
    #[arg(long)]
    pub token_stdin: bool,
}

pub fn run(args: &LoginArgs, _output: &Output) -> Result<Outcome, CliError> {
    let store = SecretStore::platform().map_err(|e| {
        let mut err = CliError::from(e);
        err.hint =
            Some("without a keyring, set HF_TOKEN or write the token to $HF_HOME/token".into());
        err
    })?;
    let token = read_token(args.token_stdin)?;
    let client = HubClient::from_env(Some(token.clone()))?;
    let user = block_on(client.whoami())?.map_err(|e| refused(e, client.endpoint()))?;
    store.set(SecretKind::HubToken, &token)?;
    let text = format!("Logged in as {} (token stored in the keyring)", user.name);
    let data = json!({
        "user": user,
        "endpoint": client.endpoint(),
        "stored_in": "keyring",
    });
    Ok(Outcome::new(data, text))
}

fn read_token(from_stdin: bool) -> Result<Secret, CliError> {
    read_secret(
        from_stdin,
        "Hugging Face token (input is hidden): ",
        "no token given; create one at https://huggingface.co/settings/tokens",
    )
}

/// A secret from stdin (when asked, or when stdin is not a terminal) or a no-echo prompt;
/// never from an argument, which other users could read in the process list.
pub fn read_secret(from_stdin: bool, prompt: &str, when_empty: &str) -> Result<Secret, CliError> {
    let input = if from_stdin || !stdin_is_terminal() {
        let mut text = String::new();
        io::stdin()
            .take(MAX_TOKEN_INPUT + 1)
            .read_to_string(&mut text)
            .map_err(|e| CliError::new("io_error", format!("cannot read stdin: {e}")))?;
        if text.len() as u64 > MAX_TOKEN_INPUT {
            return Err(CliError::usage(
                "stdin holds more than a secret; pipe only the secret",
            ));
        }
        Secret::new(text)
    } else {
        let typed = rpassword::prompt_password(prompt)
            .map_err(|e| CliError::new("io_error", format!("cannot read the secret: {e}")))?;
        Secret::new(typed)
    };
    let secret = Secret::new(input.expose().trim());
    if secret.is_empty() {
        return Err(CliError::usage(when_empty));
    }
    Ok(secret)
}

/// A token the Hub does not accept is never stored: say so.
fn refused(err: HubError, endpoint: &str) -> CliError {
    let mut cli = CliError::from(err);
    if cli.kind == "unauthorized" {
        cli.message = format!(
            "the Hub at {endpoint} does not accept this token (invalid, expired or revoked); nothing was stored"
        );
    } else {
        cli.message
            .push_str("; the token could not be checked, nothing was stored");
    }
    cli
}
