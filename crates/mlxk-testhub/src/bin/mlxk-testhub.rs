//! `mlxk-testhub`: serve a local Hugging Face Hub for tests. Prints one line,
//! `listening on http://127.0.0.1:PORT`, once it accepts connections; stops on Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use mlxk_testhub::{Gate, HubConfig, Knobs, RepoId, RepoSettings, Store, TestHub};

#[derive(Parser)]
#[command(
    version,
    about = "A local Hugging Face Hub for tests (files on disk, loopback)."
)]
struct Args {
    /// Folder holding the repos (created if missing; existing repos are served).
    #[arg(long)]
    root: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// TOKEN=USER: a token and the user it authenticates (repeatable).
    #[arg(long = "token", value_name = "TOKEN=USER")]
    tokens: Vec<String>,
    /// ORG=USER: USER may read and write ORG's repos (repeatable).
    #[arg(long = "org-member", value_name = "ORG=USER")]
    org_members: Vec<String>,
    /// FOLDER=ORG/NAME[@TAG]: commit FOLDER's files on ORG/NAME's main (creating the repo),
    /// optionally tagging the commit. Repeat for several repos or several commits, in order.
    #[arg(long = "seed-from", value_name = "FOLDER=ORG/NAME[@TAG]")]
    seeds: Vec<String>,
    /// ORG/NAME: make the repo private (repeatable).
    #[arg(long = "private", value_name = "ORG/NAME")]
    private: Vec<String>,
    /// ORG/NAME[=auto|manual]: gate the repo (repeatable).
    #[arg(long = "gated", value_name = "ORG/NAME[=MODE]")]
    gated: Vec<String>,
    /// ORG/NAME=USER: grant USER access to a gated repo (repeatable).
    #[arg(long = "grant", value_name = "ORG/NAME=USER")]
    grants: Vec<String>,
    /// Serve file downloads at about this many bytes per second.
    #[arg(long)]
    throttle: Option<u64>,
    /// Abort download responses after this many body bytes.
    #[arg(long)]
    fail_after: Option<u64>,
    /// Only cut this many download responses (with --fail-after).
    #[arg(long)]
    fail_budget: Option<u32>,
}

fn split_pair<'a>(text: &'a str, flag: &str) -> Result<(&'a str, &'a str)> {
    text.split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .with_context(|| format!("--{flag} expects A=B, got {text:?}"))
}

fn seed_all(args: &Args) -> Result<()> {
    let store =
        Store::open(&args.root).with_context(|| format!("cannot open {}", args.root.display()))?;
    for seed in &args.seeds {
        let (folder, target) = seed
            .rsplit_once('=')
            .with_context(|| format!("--seed-from expects FOLDER=ORG/NAME, got {seed:?}"))?;
        let (repo, tag) = match target.split_once('@') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (target, None),
        };
        let id = RepoId::parse(repo)?;
        store
            .seed_folder(folder.as_ref(), &id, tag)
            .with_context(|| format!("cannot seed {id} from {folder}"))?;
    }
    let mut settings: BTreeMap<String, RepoSettings> = BTreeMap::new();
    for repo in &args.private {
        settings_of(&store, &mut settings, repo)?.private = true;
    }
    for spec in &args.gated {
        let (repo, mode) = spec.split_once('=').unwrap_or((spec, "auto"));
        settings_of(&store, &mut settings, repo)?.gated = Some(match mode {
            "auto" => Gate::Auto,
            "manual" => Gate::Manual,
            other => bail!("--gated mode must be auto or manual, got {other:?}"),
        });
    }
    for spec in &args.grants {
        let (repo, user) = split_pair(spec, "grant")?;
        settings_of(&store, &mut settings, repo)?
            .granted
            .push(user.to_string());
    }
    for (repo, repo_settings) in settings {
        store.set_settings(&RepoId::parse(&repo)?, repo_settings)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    seed_all(&args)?;
    let mut config = HubConfig::new(&args.root);
    config.host = args.host;
    config.port = args.port;
    for spec in &args.tokens {
        let (token, user) = split_pair(spec, "token")?;
        config = config.token(token, user);
    }
    for spec in &args.org_members {
        let (org, user) = split_pair(spec, "org-member")?;
        config = config.org_member(org, user);
    }
    config.knobs = Knobs {
        throttle_bytes_per_sec: args.throttle,
        fail_after_bytes: args.fail_after,
        fail_budget: args.fail_budget,
        upload_hold_ms: None,
    };
    let hub = TestHub::start(config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", hub.url())?;
        stdout.flush()?;
    }
    shutdown_signal().await;
    hub.stop().await;
    Ok(())
}

/// The settings being built for `repo`, starting from its current ones.
fn settings_of<'a>(
    store: &Store,
    settings: &'a mut BTreeMap<String, RepoSettings>,
    repo: &str,
) -> Result<&'a mut RepoSettings> {
    let id = RepoId::parse(repo)?;
    if !settings.contains_key(repo) {
        let current = store
            .record(&id)
            .with_context(|| format!("{id}: no such repo"))?;
        settings.insert(repo.to_string(), current.settings);
    }
    Ok(settings.get_mut(repo).expect("inserted above"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
