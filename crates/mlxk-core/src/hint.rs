//! What a person can do about an error, named rather than worded: the core states the fact,
//! each shell words the remedy its own way (the CLI as a command or a flag, the app as a
//! setting or a button).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    /// A Hugging Face token that can read (or write) the repository.
    Login,
    /// The model is gated: accept its conditions on the Hub, then use that account's token.
    AcceptConditions,
    /// The safety check can be overridden on purpose.
    Force,
    /// The repository does not exist and can be created.
    CreateRepo,
}
