use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlxk_core::hub::push::{self, PushEvent, PushOutcome, PushPlan, PushRequest};
use mlxk_core::RepoId;
use serde_json::json;

use super::hub_client;
use crate::human;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The model folder to upload.
    pub folder: PathBuf,
    /// The repository: ORG/NAME.
    pub repo: String,
    /// Create the repository if it does not exist (private unless --public).
    #[arg(long)]
    pub create: bool,
    /// Make a newly created repository public.
    #[arg(long)]
    pub public: bool,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The commit message.
    #[arg(long, short, default_value = "Upload with mlx-knife")]
    pub message: String,
    /// Only check the folder (offline): config, weights, index, LFS pointers, partial files.
    #[arg(long, conflicts_with = "dry_run")]
    pub check_only: bool,
    /// Show what would be added, changed and deleted on the remote; upload nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete remote files that the folder does not have.
    #[arg(long)]
    pub delete: bool,
    /// Push even if the check finds errors.
    #[arg(long, short)]
    pub force: bool,
}

pub fn run(args: &PushArgs, output: &Output) -> Result<Outcome, CliError> {
    let repo = RepoId::parse(&args.repo)?;
    if repo.org().is_none() {
        return Err(CliError::usage(format!(
            "'{}' has no organisation: push needs ORG/NAME",
            args.repo
        )));
    }
    let files = push::scan_folder(&args.folder).map_err(CliError::from)?;
    let check = push::check(&args.folder, &files);
    if args.check_only {
        return Ok(check_only(args, &repo, &check));
    }
    if !check.healthy && !args.force {
        return Err(CliError::new(
            "folder_unhealthy",
            format!(
                "{} is not a healthy model folder (use --check-only for details, --force to push anyway):\n{}",
                args.folder.display(),
                check_lines(&check)
            ),
        ));
    }
    let client = hub_client()?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| CliError::new("io_error", e.to_string()))?;
    let plan = runtime
        .block_on(push::plan(
            &client,
            &repo,
            &args.branch,
            &files,
            args.delete,
        ))
        .map_err(CliError::from)?;
    if args.dry_run {
        let repo_url = format!("{}/{}", client.endpoint(), repo.as_str());
        return Ok(dry_run(args, &repo, repo_url, &plan, &check));
    }
    if !client.has_token() {
        return Err(CliError::new(
            "unauthorized",
            "pushing needs a Hugging Face token: run `mlxk login`",
        ));
    }
    let request = PushRequest {
        repo: repo.clone(),
        branch: args.branch.clone(),
        message: args.message.clone(),
        create: args.create,
        public: args.public,
    };
    let bar = upload_bar(
        &plan,
        &files,
        !output.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let events = bar.clone();
    let done = runtime
        .block_on(push::push(
            &client,
            &request,
            &files,
            &plan,
            &mlxk_core::hub::CancellationToken::new(),
            std::sync::Arc::new(move |event| show(&events, event)),
        ))
        .map_err(CliError::from)?;
    bar.finish_and_clear();
    Ok(pushed(args, &done, files.len(), &plan))
}

/// `--check-only`: the offline check of the folder, nothing sent.
fn check_only(args: &PushArgs, repo: &RepoId, check: &push::FolderCheck) -> Outcome {
    let text = format!(
        "{}: {} files, {}; {}\n{}",
        args.folder.display(),
        check.files_count,
        human::size(check.total_bytes),
        if check.healthy {
            "healthy"
        } else {
            "NOT healthy"
        },
        check_lines(check)
    );
    let mut outcome = Outcome::new(
        json!({
            "repo_id": repo.as_str(),
            "branch": args.branch,
            "repo_url": "",
            "commit_sha": null,
            "uploaded_files_count": null,
            "check_only": true,
            "workspace_health": check,
        }),
        text.trim_end().to_string(),
    );
    if !check.healthy {
        outcome.exit = crate::output::EXIT_UNHEALTHY;
    }
    outcome
}

/// `--dry-run`: what a push would change on the remote.
fn dry_run(
    args: &PushArgs,
    repo: &RepoId,
    repo_url: String,
    plan: &PushPlan,
    check: &push::FolderCheck,
) -> Outcome {
    Outcome::new(
        json!({
            "repo_id": repo.as_str(),
            "branch": args.branch,
            "repo_url": repo_url,
            "commit_sha": null,
            "uploaded_files_count": null,
            "dry_run": true,
            "no_changes": plan.no_changes(),
            "change_summary": plan,
            "workspace_health": check,
        }),
        plan_text(plan),
    )
}

/// A finished push (or one with nothing to commit).
fn pushed(args: &PushArgs, done: &PushOutcome, local_files: usize, plan: &PushPlan) -> Outcome {
    let text = if done.no_changes {
        format!(
            "No changes: {} ({}) already has these files.",
            done.repo_id, done.branch
        )
    } else {
        let created = match (done.created_repo, args.public) {
            (false, _) => "",
            (true, true) => ", a new public repository",
            (true, false) => ", a new private repository",
        };
        format!(
            "Pushed {} file(s) to {} ({}){created}: {}",
            done.uploaded_files_count,
            done.repo_id,
            done.branch,
            done.commit_url.as_deref().unwrap_or(&done.repo_url)
        )
    };
    Outcome::new(
        json!({
            "repo_id": done.repo_id,
            "branch": done.branch,
            "repo_url": done.repo_url,
            "commit_sha": done.commit_sha,
            "commit_url": done.commit_url,
            "uploaded_files_count": done.uploaded_files_count,
            "deleted_files_count": done.deleted_files_count,
            "local_files_count": local_files,
            "no_changes": done.no_changes,
            "created_repo": done.created_repo,
            "change_summary": plan,
        }),
        text,
    )
}

/// One bar for the bytes to send (on a terminal only).
fn upload_bar(plan: &PushPlan, files: &[push::LocalFile], visible: bool) -> ProgressBar {
    let bytes: u64 = files
        .iter()
        .filter(|f| plan.added.contains(&f.path) || plan.changed.contains(&f.path))
        .map(|f| f.size)
        .sum();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(bytes), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("uploading");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn show(bar: &ProgressBar, event: PushEvent) {
    match event {
        PushEvent::Started { bytes, .. } => bar.set_length(bytes),
        PushEvent::Uploaded { bytes, total } => {
            bar.set_length(total);
            bar.set_position(bytes);
        }
        PushEvent::Committing => {
            bar.set_position(bar.length().unwrap_or(0));
            bar.set_message("committing");
        }
        PushEvent::Finished => bar.set_message("done"),
    }
}

fn check_lines(check: &push::FolderCheck) -> String {
    check
        .anomalies
        .iter()
        .map(|a| {
            let severity = match a.severity {
                push::Severity::Error => "error",
                push::Severity::Warning => "warning",
            };
            format!("  {severity}: {}", a.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn plan_text(plan: &PushPlan) -> String {
    let mut lines = Vec::new();
    if !plan.repo_exists {
        lines.push("The repository does not exist yet (--create makes it, private).".to_string());
    } else if !plan.branch_exists {
        lines.push("The branch does not exist yet; it will be created.".to_string());
    }
    for (label, list) in [
        ("add", &plan.added),
        ("change", &plan.changed),
        ("delete", &plan.deleted),
    ] {
        for path in list {
            lines.push(format!("  {label:<7} {path}"));
        }
    }
    if !plan.remote_only.is_empty() && plan.deleted.is_empty() {
        lines.push(format!(
            "  {} remote file(s) not in the folder are kept (--delete removes them)",
            plan.remote_only.len()
        ));
    }
    lines.push(format!(
        "{} to add, {} to change, {} unchanged, {} to delete",
        plan.added.len(),
        plan.changed.len(),
        plan.unchanged.len(),
        plan.deleted.len()
    ));
    lines.join("\n")
}
