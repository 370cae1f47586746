//! Name resolution, shared by every command: from what a person typed to one cached model.

use crate::cache::CachedRepo;
use crate::error::{CoreError, Result};
use crate::repo_id::ModelSpec;

/// The organisation whose models a bare name means first (as in mlx-knife and mlx-lm docs).
pub const DEFAULT_ORG: &str = "mlx-community";

/// Resolves `spec` against the cached models, in this order:
/// 1. the exact `org/name`;
/// 2. a bare `name` as `mlx-community/name`;
/// 3. a case-insensitive exact full or short name, if only one model has it;
/// 4. a case-insensitive substring of the full name: one match resolves; several are
///    narrowed to those holding the requested revision, else they are an `ambiguous_match`.
///
/// `has_revision` tells whether a model holds the revision of `spec` (only asked when needed).
pub fn resolve<'a>(
    repos: &'a [CachedRepo],
    spec: &ModelSpec,
    has_revision: impl Fn(&CachedRepo, &str) -> bool,
) -> Result<&'a CachedRepo> {
    let pattern = spec.pattern.as_str();
    if let Some(exact) = repos.iter().find(|r| r.repo_id.as_str() == pattern) {
        return Ok(exact);
    }
    if !pattern.contains('/') {
        let in_default_org = format!("{DEFAULT_ORG}/{pattern}");
        if let Some(repo) = repos.iter().find(|r| r.repo_id.as_str() == in_default_org) {
            return Ok(repo);
        }
    }
    let lower = pattern.to_lowercase();
    let exact_ci: Vec<&CachedRepo> = repos
        .iter()
        .filter(|r| {
            r.repo_id.as_str().to_lowercase() == lower
                || r.repo_id.short_name().to_lowercase() == lower
        })
        .collect();
    if let [one] = exact_ci.as_slice() {
        return Ok(one);
    }
    let mut matches: Vec<&CachedRepo> = repos
        .iter()
        .filter(|r| r.repo_id.as_str().to_lowercase().contains(&lower))
        .collect();
    if matches.len() > 1 {
        if let Some(revision) = &spec.revision {
            let holding: Vec<&CachedRepo> = matches
                .iter()
                .copied()
                .filter(|r| has_revision(r, revision))
                .collect();
            if !holding.is_empty() {
                matches = holding;
            }
        }
    }
    match matches.as_slice() {
        [] => Err(CoreError::ModelNotFound(spec.to_string())),
        [one] => Ok(one),
        many => Err(CoreError::AmbiguousMatch {
            pattern: spec.to_string(),
            matches: many.iter().map(|r| r.repo_id.to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo_id::RepoId;
    use std::path::PathBuf;

    fn repos(names: &[&str]) -> Vec<CachedRepo> {
        names
            .iter()
            .map(|n| CachedRepo {
                repo_id: RepoId::parse(n).unwrap(),
                dir: PathBuf::from(n),
            })
            .collect()
    }

    fn find(repos: &[CachedRepo], text: &str) -> Result<String> {
        let spec = ModelSpec::parse(text)?;
        resolve(repos, &spec, |r, rev| {
            r.repo_id.as_str().ends_with("8bit") && rev == "abc"
        })
        .map(|r| r.repo_id.to_string())
    }

    #[test]
    fn resolves_in_documented_order() {
        let all = repos(&[
            "mlx-community/Llama-3.2-1B-Instruct-4bit",
            "mlx-community/Llama-3.2-1B-Instruct-8bit",
            "mlx-community/phi",
            "other/phi",
            "other/phi-2",
            "TheBloke/Qwen-GGUF",
        ]);
        assert_eq!(find(&all, "other/phi").unwrap(), "other/phi");
        assert_eq!(find(&all, "phi").unwrap(), "mlx-community/phi");
        assert_eq!(find(&all, "qwen").unwrap(), "TheBloke/Qwen-GGUF");
        assert_eq!(find(&all, "PHI-2").unwrap(), "other/phi-2");
        assert_eq!(
            find(&all, "llama@abc").unwrap(),
            "mlx-community/Llama-3.2-1B-Instruct-8bit"
        );
        match find(&all, "llama-3.2") {
            Err(CoreError::AmbiguousMatch { matches, .. }) => assert_eq!(matches.len(), 2),
            other => panic!("expected ambiguity, got {other:?}"),
        }
        assert!(matches!(
            find(&all, "mistral"),
            Err(CoreError::ModelNotFound(_))
        ));
        assert!(matches!(find(&all, ""), Err(CoreError::InvalidName { .. })));
    }
}
