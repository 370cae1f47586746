//! How results reach the user: one JSON envelope, or text, and the exit code.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use mlxk_core::hub::HubError;
use mlxk_core::secrets::SecretError;
use mlxk_core::{CoreError, ErrorKind, Hint};
use serde_json::{json, Map, Value};

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// `health` ran, and at least one model it checked is unhealthy.
pub const EXIT_UNHEALTHY: u8 = 3;

/// A command's successful result: the JSON `data`, the text for people, and the exit code.
pub struct Outcome {
    pub data: Value,
    pub text: String,
    pub exit: u8,
}

impl Outcome {
    pub fn new(data: Value, text: String) -> Self {
        Outcome {
            data,
            text,
            exit: EXIT_OK,
        }
    }
}

#[derive(Debug)]
pub struct CliError {
    pub kind: String,
    pub message: String,
    /// Extra fields of the JSON error object (`matches`, `available_hashes`).
    pub extra: Vec<(&'static str, Value)>,
    /// Extra lines for people (hints).
    pub hint: Option<String>,
    pub exit: u8,
}

impl CliError {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        CliError {
            kind: kind.to_string(),
            message: message.into(),
            extra: Vec::new(),
            hint: None,
            exit: EXIT_ERROR,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: EXIT_USAGE,
            ..CliError::new("usage_error", message)
        }
    }
}

impl CliError {
    /// Adds what the person can do: named in JSON (`"hint": "login"`), worded for the terminal.
    fn with_hint(mut self, hint: Option<Hint>) -> Self {
        if let Some(hint) = hint {
            self.extra.push(("hint", json!(hint)));
            let text = hint_text(hint);
            self.hint = Some(match self.hint.take() {
                Some(other) => format!("{text}\n{other}"),
                None => text.to_string(),
            });
        }
        self
    }
}

/// The CLI's words for a [`Hint`].
fn hint_text(hint: Hint) -> &'static str {
    match hint {
        Hint::Login => "hint: `mlxk login` with a token that has access",
        Hint::AcceptConditions => {
            "hint: accept its conditions on the Hub's model page, then `mlxk login` with that account"
        }
        Hint::Force => "hint: wait for it to finish, or use --force",
        Hint::CreateRepo => "hint: pass --create to create it (private unless --public)",
    }
}

impl From<CoreError> for CliError {
    fn from(err: CoreError) -> Self {
        let hint = err.hint();
        let mut cli = CliError::new(err.kind().as_str(), err.to_string());
        match &err {
            CoreError::AmbiguousMatch { matches, .. } => {
                cli.extra.push(("matches", json!(matches)));
                cli.hint = Some(format!("matches:\n  {}", matches.join("\n  ")));
            }
            CoreError::RevisionNotFound { available, .. } => {
                cli.extra.push(("available_hashes", json!(available)));
            }
            CoreError::ModelNotFound(_) => {
                cli.hint = Some("see what is cached with: mlxk list --all".into());
            }
            _ => {}
        }
        if err.kind() == ErrorKind::InvalidName {
            cli.exit = EXIT_USAGE;
        }
        cli.with_hint(hint)
    }
}

impl From<SecretError> for CliError {
    fn from(err: SecretError) -> Self {
        CliError::new(err.kind(), err.to_string())
    }
}

impl From<HubError> for CliError {
    fn from(err: HubError) -> Self {
        let mut cli = CliError::new(err.kind(), err.to_string());
        match err {
            HubError::Network { .. } => {
                cli.hint = Some(
                    "the Hub is HF_ENDPOINT when set, else https://huggingface.co; an interrupted \
                     download resumes with the next pull"
                        .into(),
                )
            }
            HubError::InvalidEndpoint { .. } => {
                cli.hint =
                    Some("the Hub is HF_ENDPOINT when set, else https://huggingface.co".into())
            }
            _ => {}
        }
        cli.with_hint(err.hint())
    }
}

pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn finish(&self, command: &str, result: Result<Outcome, CliError>) -> ExitCode {
        match result {
            Ok(outcome) => {
                if self.json {
                    print_stdout(&envelope(command, Some(outcome.data), None));
                } else if !outcome.text.is_empty() {
                    print_stdout(&outcome.text);
                }
                ExitCode::from(outcome.exit)
            }
            Err(err) => {
                // A token typed where a name belongs must not be echoed back.
                let message = mlxk_core::secrets::redact_tokens(&err.message);
                if self.json {
                    let mut error = Map::new();
                    error.insert("type".into(), json!(err.kind));
                    error.insert("message".into(), json!(message));
                    error.extend(err.extra.into_iter().map(|(k, v)| (k.to_string(), v)));
                    print_stdout(&envelope(command, None, Some(Value::Object(error))));
                } else {
                    eprintln!("mlxk {command}: error: {message}");
                    if let Some(hint) = err.hint {
                        eprintln!("{hint}");
                    }
                }
                ExitCode::from(err.exit)
            }
        }
    }
}

fn envelope(command: &str, data: Option<Value>, error: Option<Value>) -> String {
    let status = if error.is_some() { "error" } else { "success" };
    let value = json!({"status": status, "command": command, "data": data, "error": error});
    serde_json::to_string_pretty(&value).expect("JSON values serialise")
}

pub fn print_usage_envelope(command: Option<&str>, message: &str) {
    let value = json!({
        "status": "error",
        "command": command,
        "data": null,
        "error": {"type": "usage_error", "message": message},
    });
    print_stdout(&serde_json::to_string_pretty(&value).expect("JSON values serialise"));
}

/// Writes to stdout; a closed pipe (`mlxk list | head`) ends the program quietly.
pub fn print_stdout(text: &str) {
    let mut stdout = io::stdout().lock();
    let result = writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush());
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_OK.into());
        }
        eprintln!("mlxk: cannot write output: {e}");
        std::process::exit(EXIT_ERROR.into());
    }
}

/// Asks a yes/no question on the terminal (stderr) and reads the answer; an empty answer is
/// `yes_by_default`, anything unreadable is no.
pub fn ask(question: &str, yes_by_default: bool) -> bool {
    eprint!(
        "{question} {} ",
        if yes_by_default { "[Y/n]" } else { "[y/N]" }
    );
    let _ = io::stderr().flush();
    let mut answer = String::new();
    if io::BufRead::read_line(&mut io::stdin().lock(), &mut answer).is_err() {
        return false;
    }
    match answer.trim().to_ascii_lowercase().as_str() {
        "" => yes_by_default,
        reply => matches!(reply, "y" | "yes"),
    }
}

pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}
