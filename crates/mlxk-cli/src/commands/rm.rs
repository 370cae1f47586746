use clap::Args;
use mlxk_core::remove::{self, RemovalPlan, RemovalScope};
use mlxk_core::Library;
use serde_json::json;

use crate::human;
use crate::output::{ask, stdin_is_terminal, CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The model to delete; NAME@REVISION deletes only that snapshot.
    pub model: String,
    /// Delete without asking, even while a download holds a lock.
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(args: &RmArgs, output: &Output) -> Result<Outcome, CliError> {
    let library = Library::from_env();
    let resolved = library.resolve(&args.model)?;
    let plan = remove::plan_removal(library.cache(), &resolved)?;
    if let Some(lock) = plan.held_locks.first().filter(|_| !args.force) {
        return Err(CliError::new(
            "locks_present",
            format!(
                "a download of {} is running (it holds {}); wait for it to finish or pass --force",
                plan.model,
                lock.display()
            ),
        ));
    }
    if !args.force {
        if output.json || !stdin_is_terminal() {
            return Err(CliError::new(
                "confirmation_required",
                format!(
                    "not deleting {} without confirmation: there is no terminal to ask on; pass --force",
                    describe(&plan)
                ),
            ));
        }
        if !confirm(&plan) {
            return Err(CliError::new("cancelled", "cancelled; nothing was deleted"));
        }
    }
    let outcome = remove::execute(library.cache(), &plan, args.force)?;
    let message = format!(
        "Deleted {}, freed {}",
        describe(&plan),
        human::size(outcome.freed_bytes)
    );
    let (action, snapshot) = match &outcome.scope {
        RemovalScope::WholeModel => ("deleted", None),
        RemovalScope::Snapshot { commit } => ("snapshot_deleted", Some(commit.clone())),
        RemovalScope::DanglingRef { commit, .. } => ("ref_deleted", Some(commit.clone())),
    };
    let data = json!({
        "model": outcome.model,
        "action": action,
        "message": message,
        "requires_confirmation": false,
        "matches": [outcome.model],
        "snapshot": snapshot,
        "freed_bytes": outcome.freed_bytes,
        "removed": outcome.removed,
        "lock_files_cleaned": outcome.lock_files_cleaned,
    });
    Ok(Outcome::new(data, message))
}

fn describe(plan: &RemovalPlan) -> String {
    match &plan.scope {
        RemovalScope::WholeModel => format!("{} (all snapshots)", plan.model),
        RemovalScope::Snapshot { commit } => format!(
            "{}@{} (this snapshot only)",
            plan.model,
            short(commit)
        ),
        RemovalScope::DanglingRef { reference, commit } => format!(
            "the ref {}@{reference} (it names commit {}, whose snapshot is missing; no model file is touched)",
            plan.model,
            short(commit)
        ),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn confirm(plan: &RemovalPlan) -> bool {
    ask(
        &format!(
            "Delete {}, {}?",
            describe(plan),
            human::size(plan.freed_bytes)
        ),
        false,
    )
}
