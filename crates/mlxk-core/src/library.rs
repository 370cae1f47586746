//! The model library: the cache seen as a list of models, by the names people use.

use std::path::PathBuf;

use crate::cache::{CachedRepo, HubCache};
use crate::error::{CoreError, Result};
use crate::health::CheckDepth;
use crate::model::{self, ModelInfo};
use crate::repo_id::{validate_pattern, ModelSpec};
use crate::resolve;
use crate::snapshot::{RepoSnapshots, Selection};
use crate::workspace;

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
    /// `$MLXK_WORKSPACE_HOME`: its workspaces are listed with the cache's models, and bare
    /// names resolve there too.
    workspace_home: Option<PathBuf>,
}

impl Library {
    pub fn new(cache: HubCache) -> Self {
        Library {
            cache,
            depth: CheckDepth::Quick,
            workspace_home: None,
        }
    }

    /// Lists and resolves the workspaces in `home` too.
    pub fn with_workspace_home(mut self, home: Option<PathBuf>) -> Self {
        self.workspace_home = home;
        self
    }

    /// How thoroughly models are health-checked (quick by default).
    pub fn with_depth(mut self, depth: CheckDepth) -> Self {
        self.depth = depth;
        self
    }

    /// The cache `HF_HOME` / `HF_HUB_CACHE` name, and `$MLXK_WORKSPACE_HOME`.
    pub fn from_env() -> Self {
        Library::new(HubCache::from_env()).with_workspace_home(workspace::workspace_home())
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    /// The workspace home listed with the cache, when there is one.
    pub fn workspace_home(&self) -> Option<&std::path::Path> {
        self.workspace_home.as_deref()
    }

    /// Every cached model at its default snapshot, and the workspaces of the workspace home,
    /// sorted by name (a workspace's name is its folder). A broken model is listed as
    /// unhealthy; it never hides the others.
    pub fn list(&self) -> Result<Vec<ModelInfo>> {
        let mut models = self.describe_all(&self.cache.repos()?);
        models.extend(self.home_workspaces(|_| true));
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// The models whose full name (a workspace's folder name) contains `pattern`
    /// (case-insensitive); a path (`./dir`, `.`, `/abs/prefix`) lists the workspaces it names.
    pub fn list_matching(&self, pattern: &str) -> Result<Vec<ModelInfo>> {
        if workspace::looks_like_path(pattern) {
            return Ok(workspace::matching_workspaces(pattern)
                .iter()
                .map(|folder| model::inspect_folder(folder, self.depth))
                .collect());
        }
        validate_pattern(pattern).map_err(|why| CoreError::InvalidName {
            name: pattern.to_string(),
            why,
        })?;
        let lower = pattern.to_lowercase();
        let mut repos = self.cache.repos()?;
        repos.retain(|r| r.repo_id.as_str().to_lowercase().contains(&lower));
        let mut models = self.describe_all(&repos);
        models.extend(self.home_workspaces(|name| name.to_lowercase().contains(&lower)));
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// The workspaces of the workspace home whose folder names pass `keep`.
    fn home_workspaces(&self, keep: impl Fn(&str) -> bool) -> Vec<ModelInfo> {
        let Some(home) = &self.workspace_home else {
            return Vec::new();
        };
        workspace::home_workspaces(home)
            .iter()
            .filter(|folder| keep(&folder.file_name().unwrap_or_default().to_string_lossy()))
            .map(|folder| model::inspect_folder(folder, self.depth))
            .collect()
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
    /// folder outside the cache (a workspace made by `clone`, a conversion result). A bare
    /// name is first a folder of the workspace home (as mlx-knife resolves it), then a cached
    /// model, then the one workspace whose folder name contains it.
    pub fn find(&self, text: &str) -> Result<ModelInfo> {
        if workspace::looks_like_path(text) {
            let folder = std::path::Path::new(text);
            if !folder.is_dir() {
                return Err(CoreError::FolderNotFound(text.to_string()));
            }
            return Ok(model::inspect_folder(folder, self.depth));
        }
        let home = self.workspace_home.as_deref();
        if let Some(folder) = home.and_then(|home| workspace::named_in_home(home, text)) {
            return Ok(model::inspect_folder(&folder, self.depth));
        }
        let resolved = match self.resolve(text) {
            Ok(resolved) => resolved,
            Err(CoreError::ModelNotFound(name)) => {
                return match home.and_then(|home| workspace::matching_in_home(home, text)) {
                    Some(folder) => Ok(model::inspect_folder(&folder, self.depth)),
                    None => Err(CoreError::ModelNotFound(name)),
                }
            }
            Err(other) => return Err(other),
        };
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
