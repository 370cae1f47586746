//! Pulls and pushes running in the background. Each has an id, a progress snapshot the windows
//! show (per file for a pull), and a way to cancel it; every change goes to one observer (the
//! windows' event), byte counts at most every [`PROGRESS_INTERVAL`]. Nothing here knows Tauri.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlxk_core::hub::pull::{self, FileState, PullProgress, PullRequest};
use mlxk_core::hub::push::{self, PushEvent, PushRequest};
use mlxk_core::hub::{CancellationToken, HubClient, HubError};
use mlxk_core::HubCache;
use serde::{Deserialize, Serialize};

use crate::error::CommandError;

/// How often byte counts reach the windows (state changes always go at once).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(150);

pub type TransferId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Pull,
    Push,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TransferState {
    Running,
    Done {
        message: String,
        /// The pushed repository (or commit) on the Hub.
        link: Option<String>,
    },
    Failed {
        error: CommandError,
    },
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct FileProgressView {
    pub path: String,
    pub size: u64,
    pub done_bytes: u64,
    pub state: FileState,
}

/// One pull or push as the windows show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct TransferView {
    pub id: TransferId,
    pub kind: TransferKind,
    /// The repository id (and `@revision` for a pull).
    pub target: String,
    /// What it is doing now, for a person: "Listing files…", "Uploading…", "Committing…".
    pub phase: String,
    /// A pull's files (a push reports bytes only).
    pub files: Vec<FileProgressView>,
    /// Bytes that have to travel, and those that did.
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub state: TransferState,
}

impl TransferView {
    fn show_pull(&mut self, progress: &PullProgress) {
        self.phase = "Downloading…".into();
        self.total_bytes = progress.download_bytes;
        self.done_bytes = progress.received_bytes;
        self.files = progress
            .files
            .iter()
            .map(|f| FileProgressView {
                path: f.path.clone(),
                size: f.size,
                done_bytes: f.done_bytes,
                state: f.state,
            })
            .collect();
    }

    fn show_push(&mut self, event: &PushEvent) {
        match event {
            PushEvent::Started { bytes, .. } => {
                self.phase = "Uploading…".into();
                self.total_bytes = *bytes;
            }
            PushEvent::Uploaded { bytes, total } => {
                self.total_bytes = *total;
                self.done_bytes = *bytes;
            }
            PushEvent::Committing => {
                self.phase = "Committing…".into();
                self.done_bytes = self.total_bytes;
            }
            PushEvent::Finished => self.phase = "Finished".into(),
        }
    }
}

/// Transfers report events, not one state: the end of a pull must reach its notification even
/// when another transfer changed in between, so this stays a callback where the server's state
/// is a `watch` channel (which keeps only the latest value).
type Observer = Box<dyn Fn(&TransferView) + Send + Sync>;

struct Entry {
    view: TransferView,
    /// Cleared when the transfer ends.
    cancel: Option<CancellationToken>,
    last_sent: Instant,
}

/// The running and finished transfers of this app session.
#[derive(Clone, Default)]
pub struct Transfers {
    entries: Arc<Mutex<BTreeMap<TransferId, Entry>>>,
    next_id: Arc<AtomicU32>,
    observer: Arc<Mutex<Option<Observer>>>,
}

impl Transfers {
    pub fn set_observer(&self, observer: impl Fn(&TransferView) + Send + Sync + 'static) {
        *self.observer.lock().expect("observer lock") = Some(Box::new(observer));
    }

    pub fn list(&self) -> Vec<TransferView> {
        self.lock().values().map(|e| e.view.clone()).collect()
    }

    pub fn get(&self, id: TransferId) -> Option<TransferView> {
        self.lock().get(&id).map(|e| e.view.clone())
    }

    /// Asks a running transfer to stop; false when it is not running (or unknown).
    pub fn cancel(&self, id: TransferId) -> bool {
        let entries = self.lock();
        match entries.get(&id) {
            Some(Entry {
                view:
                    TransferView {
                        state: TransferState::Running,
                        ..
                    },
                cancel: Some(cancel),
                ..
            }) => {
                cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// The running transfer of `kind` for `target`, if any (one pull per repository at once).
    pub fn running(&self, kind: TransferKind, target: &str) -> Option<TransferId> {
        self.lock()
            .values()
            .find(|e| {
                e.view.kind == kind
                    && e.view.target == target
                    && e.view.state == TransferState::Running
            })
            .map(|e| e.view.id)
    }

    /// Starts pulling into `cache` on the current Tokio runtime.
    pub fn start_pull(
        &self,
        client: HubClient,
        cache: HubCache,
        request: PullRequest,
    ) -> TransferId {
        let target = pull_target(&request);
        let cancel = CancellationToken::new();
        let id = self.begin(TransferKind::Pull, target, "Listing files…", cancel.clone());
        let this = self.clone();
        // On a blocking thread: the pull's future is not `Send` for every lifetime
        // `tokio::spawn` asks (a closure over borrowed files), so it cannot be spawned as is.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let progress = Mutex::new(PullProgress::default());
            let on_event = |event: pull::PullEvent| {
                let mut progress = progress.lock().expect("progress lock");
                progress.apply(&event);
                this.update(id, |view| view.show_pull(&progress));
            };
            let result = match std::fs::create_dir_all(cache.root()) {
                Ok(()) => {
                    runtime.block_on(pull::pull(&client, &cache, &request, &cancel, &on_event))
                }
                Err(e) => Err(HubError::Io {
                    action: "creating the cache",
                    path: cache.root().display().to_string(),
                    source: e,
                }),
            };
            this.finish(
                id,
                match result {
                    Ok(outcome) => TransferState::Done {
                        message: format!(
                            "{} at {}: {} files, {} downloaded",
                            outcome.repo,
                            &outcome.commit[..12.min(outcome.commit.len())],
                            outcome.files,
                            humansize::format_size(outcome.downloaded_bytes, humansize::DECIMAL),
                        ),
                        link: None,
                    },
                    Err(HubError::Cancelled) => TransferState::Cancelled,
                    Err(e) => TransferState::Failed { error: e.into() },
                },
            );
        });
        id
    }

    /// Starts pushing `folder` as `plan` says, on the current Tokio runtime. Cancelling stops
    /// it before the commit is made (nothing changes on the Hub); once committing, it ends.
    pub fn start_push(
        &self,
        client: HubClient,
        folder: PathBuf,
        request: PushRequest,
        files: Vec<push::LocalFile>,
        plan: push::PushPlan,
    ) -> TransferId {
        let this = self.clone();
        let cancel = CancellationToken::new();
        let id = self.begin(
            TransferKind::Push,
            request.repo.as_str().to_string(),
            "Uploading…",
            cancel.clone(),
        );
        tokio::spawn(async move {
            let events = this.clone();
            let on_event = Arc::new(move |event: PushEvent| {
                events.update(id, |view| view.show_push(&event));
            });
            let result = push::push(&client, &request, &files, &plan, &cancel, on_event).await;
            let state = match result {
                Err(HubError::Cancelled) => TransferState::Cancelled,
                Ok(done) if done.no_changes => TransferState::Done {
                    message: format!(
                        "No changes: {} ({}) already has these files",
                        done.repo_id, done.branch
                    ),
                    link: Some(done.repo_url),
                },
                Ok(done) => TransferState::Done {
                    message: format!(
                        "Pushed {} file(s) from {} to {} ({}){}",
                        done.uploaded_files_count,
                        folder.display(),
                        done.repo_id,
                        done.branch,
                        if done.created_repo {
                            if request.public {
                                ", a new public repository"
                            } else {
                                ", a new private repository"
                            }
                        } else {
                            ""
                        }
                    ),
                    link: Some(done.commit_url.unwrap_or(done.repo_url)),
                },
                Err(e) => TransferState::Failed { error: e.into() },
            };
            this.finish(id, state);
        });
        id
    }

    fn begin(
        &self,
        kind: TransferKind,
        target: String,
        phase: &str,
        cancel: CancellationToken,
    ) -> TransferId {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let view = TransferView {
            id,
            kind,
            target,
            phase: phase.into(),
            files: Vec::new(),
            total_bytes: 0,
            done_bytes: 0,
            state: TransferState::Running,
        };
        self.lock().insert(
            id,
            Entry {
                view: view.clone(),
                cancel: Some(cancel),
                last_sent: Instant::now(),
            },
        );
        self.notify(&view);
        id
    }

    /// Changes a running transfer's view; tells the observer at most every
    /// [`PROGRESS_INTERVAL`] unless the phase changed.
    fn update(&self, id: TransferId, change: impl FnOnce(&mut TransferView)) {
        let send = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            let before = milestones(&entry.view);
            change(&mut entry.view);
            let due =
                entry.last_sent.elapsed() >= PROGRESS_INTERVAL || milestones(&entry.view) != before;
            if due {
                entry.last_sent = Instant::now();
            }
            due.then(|| entry.view.clone())
        };
        if let Some(view) = send {
            self.notify(&view);
        }
    }

    fn finish(&self, id: TransferId, state: TransferState) {
        let view = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(&id) else {
                return;
            };
            entry.view.state = state;
            entry.cancel = None;
            entry.view.clone()
        };
        self.notify(&view);
    }

    fn notify(&self, view: &TransferView) {
        if let Some(observer) = self.observer.lock().expect("observer lock").as_ref() {
            observer(view);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TransferId, Entry>> {
        self.entries.lock().expect("transfers lock")
    }
}

/// How a pull is named in its view: `org/name`, or `org/name@revision`.
pub fn pull_target(request: &PullRequest) -> String {
    match &request.revision {
        Some(revision) => format!("{}@{revision}", request.repo.as_str()),
        None => request.repo.as_str().to_string(),
    }
}

/// What always reaches the windows at once: the phase and each file's state.
fn milestones(view: &TransferView) -> (String, Vec<FileState>) {
    (
        view.phase.clone(),
        view.files.iter().map(|f| f.state).collect(),
    )
}
