//! Model names as the Hub spells them, and the names people type.
//!
//! Everything a user types is validated here, before any file is touched: the result can only
//! ever name a directory directly inside the cache root.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The Hub's limit on the length of a repository id.
const MAX_REPO_ID_LEN: usize = 96;
const MAX_REVISION_LEN: usize = 255;

/// A Hub repository id (`org/name`, or a bare `name` for legacy repos), valid by the Hub's rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |why: &str| CoreError::InvalidName {
            name: text.to_string(),
            why: why.to_string(),
        };
        check_common(text).map_err(|why| invalid(&why))?;
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 2 {
            return Err(invalid("a repository id has at most one '/'"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(invalid("empty organisation or name"));
            }
            let first = part.chars().next().unwrap_or('-');
            let last = part.chars().last().unwrap_or('-');
            if !first.is_ascii_alphanumeric() && first != '_'
                || !last.is_ascii_alphanumeric() && last != '_'
            {
                return Err(invalid(
                    "each part must start and end with a letter, digit or '_'",
                ));
            }
        }
        if text.contains("--") {
            return Err(invalid("'--' is not allowed in a repository id"));
        }
        if text.ends_with(".git") {
            return Err(invalid("a repository id cannot end in '.git'"));
        }
        Ok(RepoId(text.to_string()))
    }

    /// Maps a cache directory name (`models--org--name`) back to the repository id, if it is one.
    pub fn from_cache_dir_name(dir_name: &str) -> Option<Self> {
        let rest = dir_name.strip_prefix("models--")?;
        RepoId::parse(&rest.replacen("--", "/", 1)).ok()
    }

    /// The directory name `huggingface_hub` uses for this model in the cache.
    pub fn cache_dir_name(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn org(&self) -> Option<&str> {
        self.0.split_once('/').map(|(org, _)| org)
    }

    /// The name without its organisation.
    pub fn short_name(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(_, name)| name)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RepoId {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self> {
        RepoId::parse(&value)
    }
}

impl From<RepoId> for String {
    fn from(value: RepoId) -> Self {
        value.0
    }
}

/// What a user typed to name a model: a pattern (full name, bare name or substring) and an
/// optional `@revision` (a ref such as `main`, or a commit hash prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub pattern: String,
    pub revision: Option<String>,
}

impl ModelSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let (pattern, revision) = match text.split_once('@') {
            Some((pattern, revision)) => (pattern, Some(revision)),
            None => (text, None),
        };
        validate_pattern(pattern).map_err(|why| CoreError::InvalidName {
            name: text.to_string(),
            why,
        })?;
        if let Some(revision) = revision {
            validate_revision(revision).map_err(|why| CoreError::InvalidName {
                name: text.to_string(),
                why,
            })?;
        }
        Ok(ModelSpec {
            pattern: pattern.to_string(),
            revision: revision.map(str::to_string),
        })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(revision) => write!(f, "{}@{}", self.pattern, revision),
            None => f.write_str(&self.pattern),
        }
    }
}

/// A search pattern: a full name, a bare name or a case-insensitive substring of either.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    check_common(pattern)?;
    if pattern.matches('/').count() > 1 {
        return Err("a model name has at most one '/'".into());
    }
    Ok(())
}

fn validate_revision(revision: &str) -> Result<(), String> {
    if revision.is_empty() {
        return Err("empty revision after '@'".into());
    }
    if revision.len() > MAX_REVISION_LEN {
        return Err(format!(
            "revision longer than {MAX_REVISION_LEN} characters"
        ));
    }
    if revision.starts_with('/') || revision.ends_with('/') || revision.contains("..") {
        return Err("revision must not contain '..' or start or end with '/'".into());
    }
    if let Some(bad) = revision
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!("character {bad:?} is not allowed in a revision"));
    }
    Ok(())
}

fn check_common(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the name is empty".into());
    }
    if text.len() > MAX_REPO_ID_LEN {
        return Err(format!("longer than {MAX_REPO_ID_LEN} characters"));
    }
    if text.starts_with('/') || text.starts_with('~') {
        return Err("paths are not model names".into());
    }
    if text.contains("..") {
        return Err("'..' is not allowed".into());
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "character {bad:?} is not allowed (letters, digits, '-', '_', '.' and one '/')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hub_names() {
        for name in [
            "gpt2",
            "mlx-community/Llama-3.2-1B-Instruct-4bit",
            "my_org.dev/M_v1.5",
        ] {
            assert_eq!(RepoId::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_path_tricks_and_bad_characters() {
        for name in [
            "",
            "../etc",
            "/abs/path",
            "a/b/c",
            "org/..",
            "org/na me",
            "org/name\0",
            "org--x/y",
            "org/-x",
            "x.git",
            "org/",
            "~/models",
            "org\\name",
        ] {
            assert!(RepoId::parse(name).is_err(), "{name:?} should be rejected");
        }
        for spec in [
            "",
            "../x",
            "/etc/passwd",
            "a/b/c",
            "x@",
            "x@../main",
            "x@/main",
            "a b",
        ] {
            assert!(
                ModelSpec::parse(spec).is_err(),
                "{spec:?} should be rejected"
            );
        }
    }

    #[test]
    fn maps_cache_directory_names_both_ways() {
        let id = RepoId::parse("mlx-community/Qwen3-4B").unwrap();
        assert_eq!(id.cache_dir_name(), "models--mlx-community--Qwen3-4B");
        assert_eq!(
            RepoId::from_cache_dir_name("models--mlx-community--Qwen3-4B"),
            Some(id)
        );
        assert_eq!(
            RepoId::from_cache_dir_name("models--gpt2")
                .unwrap()
                .as_str(),
            "gpt2"
        );
        assert_eq!(RepoId::from_cache_dir_name("datasets--org--x"), None);
        assert_eq!(RepoId::from_cache_dir_name("models--a--b--c"), None);
    }

    #[test]
    fn splits_revision() {
        let spec = ModelSpec::parse("Qwen3@abc123").unwrap();
        assert_eq!(spec.pattern, "Qwen3");
        assert_eq!(spec.revision.as_deref(), Some("abc123"));
        assert_eq!(
            ModelSpec::parse("org/m@refs/pr/1")
                .unwrap()
                .revision
                .unwrap(),
            "refs/pr/1"
        );
    }
}
