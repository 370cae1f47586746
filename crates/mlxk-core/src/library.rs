//! The model library: the cache seen as a list of models, by the names people use.

use std::path::PathBuf;

use crate::cache::{CachedRepo, HubCache};
use crate::error::{CoreError, Result};
use crate::health::CheckDepth;
use crate::model::{self, ModelInfo};
use crate::repo_id::{validate_pattern, ModelSpec};
use crate::resolve;
use crate::snapshot::{RepoSnapshots, Selection};

/// A resolved model name: which cached model, and which of its snapshots.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub repo: CachedRepo,
    pub snapshots: RepoSnapshots,
    pub selection: Selection,
    /// Whether the user named a revision (`name@rev`) rather than taking the default.
    pub explicit_revision: bool,
}

/// A model the engine can run: what `mlxk run` and the server load.
#[derive(Debug, Clone)]
pub struct RunnableModel {
    /// `org/name`, or the folder for a model outside the cache.
    pub name: String,
    /// The snapshot folder the engine loads.
    pub dir: PathBuf,
    /// Prompt plus answer at most, in tokens: the model's own, else [`DEFAULT_CONTEXT`].
    pub context_length: usize,
    pub info: ModelInfo,
}

/// The context to assume when `config.json` does not say.
pub const DEFAULT_CONTEXT: usize = 4096;

#[derive(Debug, Clone)]
pub struct Library {
    cache: HubCache,
    depth: CheckDepth,
}

impl Library {
    pub fn new(cache: HubCache) -> Self {
        Library {
            cache,
            depth: CheckDepth::Quick,
        }
    }

    /// How thoroughly models are health-checked (quick by default).
    pub fn with_depth(mut self, depth: CheckDepth) -> Self {
        self.depth = depth;
        self
    }

    pub fn from_env() -> Self {
        Library::new(HubCache::from_env())
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    /// Every cached model at its default snapshot, sorted by name. A broken model is listed
    /// as unhealthy; it never hides the others.
    pub fn list(&self) -> Result<Vec<ModelInfo>> {
        Ok(self.describe_all(&self.cache.repos()?))
    }

    /// The cached models whose full name contains `pattern` (case-insensitive).
    pub fn list_matching(&self, pattern: &str) -> Result<Vec<ModelInfo>> {
        validate_pattern(pattern).map_err(|why| CoreError::InvalidName {
            name: pattern.to_string(),
            why,
        })?;
        let lower = pattern.to_lowercase();
        let mut repos = self.cache.repos()?;
        repos.retain(|r| r.repo_id.as_str().to_lowercase().contains(&lower));
        Ok(self.describe_all(&repos))
    }

    /// Resolves what a person typed (`name`, `org/name`, `name@rev`) to one model and snapshot.
    pub fn resolve(&self, text: &str) -> Result<ResolvedModel> {
        let spec = ModelSpec::parse(text)?;
        let repos = self.cache.repos()?;
        let repo = resolve::resolve(&repos, &spec, |repo, revision| {
            RepoSnapshots::read(&repo.dir).has_revision(revision)
        })?
        .clone();
        let snapshots = RepoSnapshots::read(&repo.dir);
        let selection = match &spec.revision {
            None => snapshots.select_default(),
            Some(revision) => match snapshots.select_revision(revision) {
                Ok(Some(selection)) => selection,
                Ok(None) => {
                    return Err(CoreError::RevisionNotFound {
                        model: repo.repo_id.to_string(),
                        revision: revision.clone(),
                        available: snapshots.available_revisions(),
                    })
                }
                Err(candidates) => {
                    return Err(CoreError::AmbiguousMatch {
                        pattern: spec.to_string(),
                        matches: candidates,
                    })
                }
            },
        };
        Ok(ResolvedModel {
            repo,
            snapshots,
            selection,
            explicit_revision: spec.revision.is_some(),
        })
    }

    /// Resolves and describes a model; a path (`./dir`, `/abs/dir`, `../dir`) names a model
    /// folder outside the cache (a workspace made by `clone`, a conversion result).
    pub fn find(&self, text: &str) -> Result<ModelInfo> {
        if crate::workspace::looks_like_path(text) {
            let folder = std::path::Path::new(text);
            if !folder.is_dir() {
                return Err(CoreError::FolderNotFound(text.to_string()));
            }
            return Ok(model::inspect_folder(folder, self.depth));
        }
        let resolved = self.resolve(text)?;
        Ok(model::inspect(
            &resolved.repo,
            &resolved.snapshots,
            &resolved.selection,
            self.depth,
        ))
    }

    /// Resolves a name (or folder) to a model the engine can run: healthy, of an architecture
    /// it implements, without custom code.
    pub fn find_runnable(&self, text: &str) -> Result<RunnableModel> {
        let info = self.find(text)?;
        let dir = match (&info.path, info.runtime.compatible) {
            (Some(dir), true) => dir.clone(),
            _ => {
                return Err(CoreError::NotRunnable {
                    why: info.reason().unwrap_or_else(|| "it has no snapshot".into()),
                    model: info.name,
                })
            }
        };
        Ok(RunnableModel {
            name: info.name.clone(),
            dir,
            context_length: info
                .classification
                .context_length
                .map_or(DEFAULT_CONTEXT, |n| n as usize),
            info,
        })
    }

    /// Describes many models, spread over the machine's cores (the work is mostly file-system
    /// calls, which run in parallel well). The order of `repos` is kept.
    fn describe_all(&self, repos: &[CachedRepo]) -> Vec<ModelInfo> {
        const MIN_PER_THREAD: usize = 8;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(repos.len() / MIN_PER_THREAD)
            .max(1);
        if threads == 1 {
            return repos.iter().map(|r| self.describe_default(r)).collect();
        }
        let chunk = repos.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = repos
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|r| self.describe_default(r))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("describing a model does not panic"))
                .collect()
        })
    }

    fn describe_default(&self, repo: &CachedRepo) -> ModelInfo {
        let snapshots = RepoSnapshots::read(&repo.dir);
        let selection = snapshots.select_default();
        model::inspect(repo, &snapshots, &selection, self.depth)
    }
}
