//! `mlxk`: a thin command-line shell over `mlxk-core`.

mod commands;
mod human;
mod json_api;
mod local_server;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::{CliError, Outcome, Output};

/// Manage, run and serve local MLX models kept in the Hugging Face cache.
#[derive(Debug, Parser)]
#[command(
    name = "mlxk",
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Print the version (with --json: the version envelope).
    #[arg(short = 'V', long)]
    version: bool,

    /// Print one JSON envelope {status, command, data, error} on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List cached models (healthy MLX models unless --all).
    #[command(alias = "ls")]
    List(commands::list::ListArgs),
    /// Show one model: what it is, its health, files or config.
    Show(commands::show::ShowArgs),
    /// Check the integrity of one model, or of every cached model.
    Health(commands::health::HealthArgs),
    /// Delete a model (or one snapshot with NAME@REVISION) from the cache.
    Rm(commands::rm::RmArgs),
    /// Convert a GGUF file or a safetensors model into an MLX model folder (or into the cache).
    Convert(commands::convert::ConvertArgs),
    /// Generate text: one answer for a prompt, or an interactive chat.
    Run(commands::run::RunArgs),
    /// Turn texts into vectors with an embedding model (JSON lines out).
    Embed(commands::embed::EmbedArgs),
    /// Download a model from the Hugging Face Hub into the cache (resumable, verified).
    Pull(commands::pull::PullArgs),
    /// Copy a model (from the cache, else from the Hub) into a workspace folder.
    Clone(commands::clone::CloneArgs),
    /// Upload a model folder to a Hub repository (check, dry-run, then one commit).
    Push(commands::push::PushArgs),
    /// Serve the OpenAI-compatible API (chat, completions, models) on this machine.
    #[command(alias = "server")]
    Serve(commands::serve::ServeArgs),
    /// List the models a running server holds in memory.
    Ps(commands::ps::PsArgs),
    /// Unload a model from a running server.
    Stop(commands::stop::StopArgs),
    /// Check a Hugging Face token with the Hub and store it in the OS keyring.
    Login(commands::login::LoginArgs),
    /// Remove the Hugging Face token from the OS keyring.
    Logout(commands::logout::LogoutArgs),
    /// Show the Hugging Face account of the token in use, and where the token came from.
    Whoami(commands::whoami::WhoamiArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::List(_) => "list",
            Command::Show(_) => "show",
            Command::Health(_) => "health",
            Command::Rm(_) => "rm",
            Command::Convert(_) => "convert",
            Command::Run(_) => "run",
            Command::Embed(_) => "embed",
            Command::Serve(_) => "server",
            Command::Pull(_) => "pull",
            Command::Push(_) => "push",
            Command::Clone(_) => "clone",
            Command::Ps(_) => "ps",
            Command::Stop(_) => "stop",
            Command::Login(_) => "login",
            Command::Logout(_) => "logout",
            Command::Whoami(_) => "whoami",
        }
    }
}

const COMMAND_NAMES: &[&str] = &[
    "list", "ls", "show", "health", "rm", "convert", "run", "embed", "serve", "pull", "push",
    "clone", "ps", "stop", "login", "logout", "whoami",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&args, err),
    };
    if matches!(
        cli.command,
        Some(Command::Run(_) | Command::Embed(_) | Command::Serve(_))
    ) {
        // Before any MLX work: OpenBLAS's threads must not spin on a busy machine.
        mlx_sys::prefer_passive_openmp();
    }
    let output = Output::new(cli.json);
    let (command, result) = match &cli.command {
        _ if cli.version => ("version", commands::version::run(&output)),
        Some(command) => (command.name(), dispatch(command, &output)),
        None => (
            "version",
            Err(CliError::usage("no command given; see mlxk --help")),
        ),
    };
    output.finish(command, result)
}

fn dispatch(command: &Command, output: &Output) -> Result<Outcome, CliError> {
    match command {
        Command::List(args) => commands::list::run(args, output),
        Command::Show(args) => commands::show::run(args, output),
        Command::Health(args) => commands::health::run(args, output),
        Command::Rm(args) => commands::rm::run(args, output),
        Command::Convert(args) => commands::convert::run(args, output),
        Command::Run(args) => commands::run::run(args, output),
        Command::Embed(args) => commands::embed::run(args, output),
        Command::Serve(args) => commands::serve::run(args, output),
        Command::Pull(args) => commands::pull::run(args, output),
        Command::Push(args) => commands::push::run(args, output),
        Command::Clone(args) => commands::clone::run(args, output),
        Command::Ps(args) => commands::ps::run(args, output),
        Command::Stop(args) => commands::stop::run(args, output),
        Command::Login(args) => commands::login::run(args, output),
        Command::Logout(args) => commands::logout::run(args, output),
        Command::Whoami(args) => commands::whoami::run(args, output),
    }
}

/// clap's own errors, as a JSON envelope when `--json` was asked for.
fn usage_error(args: &[String], err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = args.iter().any(|a| a == "--json");
    if !wants_json
        || matches!(
            err.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        )
    {
        // clap quotes the arguments it refuses: a token typed by mistake is not repeated.
        let text = mlxk_core::secrets::redact_tokens(&err.render().to_string());
        if err.use_stderr() {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        return ExitCode::from(if err.use_stderr() {
            output::EXIT_USAGE
        } else {
            output::EXIT_OK
        });
    }
    let command = args
        .iter()
        .skip(1)
        .find(|a| COMMAND_NAMES.contains(&a.as_str()))
        .map(|a| if a == "ls" { "list" } else { a.as_str() });
    let message = mlxk_core::secrets::redact_tokens(&err.render().to_string());
    let message = message
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    output::print_usage_envelope(command, message);
    ExitCode::from(output::EXIT_USAGE)
}
