use std::collections::HashMap;
use std::sync::Mutex;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlxk_core::hub::pull::{pull, PullEvent, PullNameError, PullOutcome, PullRequest};
use mlxk_core::hub::CancellationToken;
use mlxk_core::HubCache;
use serde_json::json;

use super::hub_client;
use crate::human;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// ORG/NAME on the Hub, optionally @REVISION (a branch, tag or commit).
    pub model: String,
    /// Also fetch weights in formats MLX does not load (*.bin, *.pt, *.gguf, ...).
    #[arg(long)]
    pub all_files: bool,
}

pub fn run(args: &PullArgs, output: &Output) -> Result<Outcome, CliError> {
    let request = PullRequest::from_name(&args.model, args.all_files).map_err(|e| match e {
        PullNameError::Invalid(e) => CliError::from(e),
        other => CliError::usage(other.to_string()),
    })?;
    // Progress bars on a terminal only; nothing on stderr in --json mode.
    let bars = Bars::new(!output.json && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let outcome = pull_into_cache(&request, &|event| bars.show(event))?;
    bars.finish();
    let status = if outcome.downloaded_files == 0 {
        "already_cached"
    } else {
        "success"
    };
    let message = format!(
        "{} at {}: {} files, {} downloaded{}",
        outcome.repo,
        &outcome.commit[..12],
        outcome.files,
        human::size(outcome.downloaded_bytes),
        if outcome.skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} skipped: {})",
                outcome.skipped.len(),
                outcome.skipped.join(", ")
            )
        }
    );
    let data = json!({
        "model": outcome.repo,
        "download_status": status,
        "message": message,
        "expanded_name": null,
        "commit": outcome.commit,
        "snapshot": outcome.snapshot,
        "files": outcome.files,
        "downloaded_files": outcome.downloaded_files,
        "downloaded_bytes": outcome.downloaded_bytes,
        "skipped": outcome.skipped,
    });
    Ok(Outcome::new(data, format!("Pulled {message}")))
}

/// Pulls into the cache `HF_HOME` names (created if missing) with the user's token.
pub fn pull_into_cache(
    request: &PullRequest,
    on_event: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<PullOutcome, CliError> {
    if mlxk_core::hub::offline_from_env() {
        return Err(CliError::new(
            "offline",
            format!(
                "HF_HUB_OFFLINE is set: {} is not downloaded (unset it to reach the Hub)",
                request.repo.as_str()
            ),
        ));
    }
    let client = hub_client()?;
    let cache = HubCache::from_env();
    std::fs::create_dir_all(cache.root()).map_err(|e| {
        CliError::new(
            "io_error",
            format!("creating {}: {e}", cache.root().display()),
        )
    })?;
    super::block_on(pull(
        &client,
        &cache,
        request,
        &CancellationToken::new(),
        on_event,
    ))?
    .map_err(CliError::from)
}

/// One bar per file plus a total, with speed and time left.
struct Bars {
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    files: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            total: Mutex::new(None),
            files: Mutex::new(HashMap::new()),
        }
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn show(&self, event: PullEvent) {
        match event {
            PullEvent::Planned {
                files,
                download_bytes,
                ..
            } => {
                let total = self.multi.add(ProgressBar::new(download_bytes));
                total.set_style(Self::style(
                    "{msg:<32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                ));
                total.set_message("total");
                let cached = files.iter().filter(|f| f.cached).count();
                if cached > 0 {
                    total.println(format!(
                        "{cached} of {} files already in the cache",
                        files.len()
                    ));
                }
                *self.total.lock().expect("not poisoned") = Some(total);
            }
            PullEvent::FileStarted {
                path,
                size,
                resumed_from,
            } => {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(Self::style(
                    "{msg:<32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ));
                bar.set_message(short(&path));
                bar.set_position(resumed_from);
                self.files.lock().expect("not poisoned").insert(path, bar);
            }
            PullEvent::Bytes { path, bytes } => {
                if let Some(bar) = self.files.lock().expect("not poisoned").get(&path) {
                    bar.inc(bytes);
                }
                if let Some(total) = self.total.lock().expect("not poisoned").as_ref() {
                    total.inc(bytes);
                }
            }
            PullEvent::FileFinished { path } => {
                if let Some(bar) = self.files.lock().expect("not poisoned").remove(&path) {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(total) = self.total.lock().expect("not poisoned").take() {
            total.finish_and_clear();
        }
    }
}

fn short(path: &str) -> String {
    let chars: Vec<char> = path.chars().collect();
    if chars.len() <= 32 {
        path.to_string()
    } else {
        format!("…{}", chars[chars.len() - 31..].iter().collect::<String>())
    }
}
