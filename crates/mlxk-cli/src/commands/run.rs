use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use mlxk_core::usage::UsageLog;
use mlxk_core::Library;
use mlxk_engine::constraint::Grammar;
use mlxk_engine::{
    AnswerOptions, ChatMessage, EngineError, FinishReason, LoadPolicy, Prompt, RuntimeInfo,
    SamplingChoice, TextEvent, TextModel,
};
use serde_json::json;

use super::{block_on, WeightArgs};
use crate::local_server::{LocalServer, ServerArgs};
use crate::output::{ask, CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: name, org/name, substring, or NAME@REVISION.
    pub model: String,
    /// The prompt (words are joined with spaces); `-` reads it from stdin. Without one: a chat.
    pub prompt: Vec<String>,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    // Sampling left out comes from the model's generation_config.json, then the defaults
    // the API shares (temperature 0.7, top-p 0.9, the rest off).
    /// Sampling temperature; 0 picks the most likely token every time [default: the model's,
    /// else 0.7].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// [default: the model's, else 0.9]
    #[arg(long)]
    pub top_p: Option<f32>,
    /// 0 = off [default: the model's, else off].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// 0 = off [default: the model's, else off].
    #[arg(long)]
    pub min_p: Option<f32>,
    /// 1 = off [default: the model's, else off].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// At most this many new tokens (clamped to the model's context).
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Send the prompt as raw text, without the model's chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// Print the answer once complete instead of token by token.
    #[arg(long)]
    pub no_stream: bool,
    /// End the answer where this text appears (never printed); repeatable.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stops: Vec<String>,
    /// Answer with JSON valid against the JSON Schema in FILE (enforced by a grammar).
    #[arg(long, value_name = "FILE", conflicts_with = "json_object")]
    pub json_schema: Option<std::path::PathBuf>,
    /// Answer with a JSON object (enforced by a grammar). (`--json` is the JSON envelope.)
    #[arg(long)]
    pub json_object: bool,
    /// Do not show a reasoning model's thinking (`<think>…</think>`); it goes to stderr otherwise.
    #[arg(long)]
    pub hide_reasoning: bool,
    /// Report load time, weight layout, prompt and decode speed, time to first token and peak
    /// memory.
    #[arg(long, short)]
    pub verbose: bool,
    /// Answer through a running mlxk server (which may already hold the model) instead of
    /// loading it here: `--server` for the one `mlxk serve` last started (else MLXK_SERVER,
    /// else http://127.0.0.1:8000), `--server=URL` for another.
    #[arg(long, value_name = "URL", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub server: Option<String>,
    /// Transcribe this audio file with a speech-to-text (Whisper) model instead of chatting; the
    /// prompt, if any, is context for the first 30 seconds (names, spelling).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "system", "top_p", "top_k", "min_p", "repetition_penalty", "stops", "json_schema",
        "json_object", "no_chat_template", "hide_reasoning", "server",
    ])]
    pub audio: Option<std::path::PathBuf>,
    /// The spoken language (code or English name, e.g. de or german) [default: detected, or
    /// English for English-only models].
    #[arg(long, requires = "audio")]
    pub language: Option<String>,
    /// Translate the speech into English (multilingual Whisper models).
    #[arg(long, requires = "audio")]
    pub translate: bool,
    /// Print each segment on its own line with its start and end time.
    #[arg(long, requires = "audio")]
    pub timestamps: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

struct Loaded {
    name: String,
    engine: Engine,
}

/// Where answers come from.
enum Engine {
    Here {
        model: Box<TextModel>,
        context_length: usize,
    },
    Server(LocalServer),
}

/// How one answer went, generated here or by a server.
pub struct Stats {
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Of the prompt tokens, those kept from the turn before (not computed again).
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// Until the first token.
    pub prompt_time: Duration,
    pub decode_time: Duration,
}

impl Stats {
    fn prompt_tokens_per_second(&self) -> f64 {
        // Another server's usage may say anything.
        self.prompt_tokens.saturating_sub(self.cached_tokens) as f64
            / self.prompt_time.as_secs_f64().max(1e-9)
    }

    /// The first token comes with the prompt: the rest over the decode time, as mlx-lm counts.
    fn decode_tokens_per_second(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

impl From<mlxk_engine::Generation> for Stats {
    fn from(generation: mlxk_engine::Generation) -> Self {
        Stats {
            finish_reason: generation.finish_reason,
            prompt_tokens: generation.prompt_tokens,
            cached_tokens: generation.reused_tokens,
            generated_tokens: generation.tokens.len(),
            prompt_time: generation.prompt_time,
            decode_time: generation.decode_time,
        }
    }
}

pub fn run(args: &RunArgs, output: &Output) -> Result<Outcome, CliError> {
    if let Some(audio) = &args.audio {
        return super::run_audio::run(args, audio, output);
    }
    // A schema file that cannot be read is said before the model loads.
    structured_output(args)?;
    let started = Instant::now();
    let loaded = match &args.server {
        Some(url) => through_server(args, url)?,
        None => load(&args.model, &args.weights.policy()?, output)?,
    };
    if let (true, Engine::Here { model, .. }) = (args.verbose, &loaded.engine) {
        eprintln!(
            "[loaded {} in {:.2} s; weights {}: {}; BLAS {}]",
            loaded.name,
            started.elapsed().as_secs_f64(),
            model.plan.layout.label(),
            model.plan.reason,
            RuntimeInfo::detect().blas.name,
        );
    }
    match prompt(args)? {
        Some(prompt) => one_shot(args, output, &loaded, &prompt),
        None if output.json => Err(CliError::usage(
            "--json needs a prompt (an interactive chat has no single result)",
        )),
        None => chat(args, &loaded).map(|()| Outcome::new(json!(null), String::new())),
    }
}

/// The prompt words joined, or stdin for `-`; `None` without any.
pub(super) fn prompt(args: &RunArgs) -> Result<Option<String>, CliError> {
    Ok(match args.prompt.as_slice() {
        [] => None,
        [dash] if dash == "-" => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::new("io_error", e.to_string()))?;
            Some(text.trim_end().to_string())
        }
        words => Some(words.join(" ")),
    })
}

fn load(name: &str, policy: &LoadPolicy, output: &Output) -> Result<Loaded, CliError> {
    let library = Library::from_env();
    let runnable = find(&library, name, output)?;
    if runnable.info.classification.model_type == mlxk_core::classify::ModelType::Embedding {
        return Err(CliError::new(
            "not_a_text_model",
            format!(
                "{} is an embedding model: it makes vectors, not text; use `mlxk embed {}`",
                runnable.name, runnable.name
            ),
        ));
    }
    if runnable.info.classification.model_type == mlxk_core::classify::ModelType::Audio {
        return Err(CliError::new(
            "not_a_text_model",
            format!(
                "{} is a speech-to-text model: give it audio with `mlxk run {} --audio FILE`",
                runnable.name, runnable.name
            ),
        ));
    }
    let spinner = loading(&runnable.name, output);
    let model = TextModel::load(&runnable.dir, policy);
    spinner.finish_and_clear();
    let mut model = model.map_err(|e| CliError::new("execution_error", e.to_string()))?;
    // An interactive chat's next turn starts with the last one: its keys and values are kept
    // instead of prefilling the whole history again.
    model.keep_prefixes(mlxk_engine::prefix_cache::default_capacity() as usize);
    // For the app's "last used"; a read-only cache must not stop a run.
    let _ = UsageLog::for_cache(library.cache()).record(&runnable.name);
    Ok(Loaded {
        name: runnable.name,
        engine: Engine::Here {
            model: Box::new(model),
            context_length: runnable.context_length,
        },
    })
}

/// The runnable model `name` names; on a terminal, one not in the cache is offered for download.
pub(super) fn find(
    library: &Library,
    name: &str,
    output: &Output,
) -> Result<mlxk_core::RunnableModel, CliError> {
    match library.find_runnable(name) {
        Err(mlxk_core::CoreError::ModelNotFound(_)) if offer_pull(name, output)? => {
            Ok(Library::from_env().find_runnable(name)?)
        }
        // Not here at all: the exact command that would fetch it.
        Err(e @ mlxk_core::CoreError::ModelNotFound(_)) => {
            let mut error = CliError::from(e);
            error.hint = Some(format!("not in the cache; fetch it with: mlxk pull {name}"));
            Err(error)
        }
        other => Ok(other?),
    }
}

/// Loading takes seconds: said on a terminal rather than sitting silent.
pub(super) fn loading(name: &str, output: &Output) -> ProgressBar {
    if output.json || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("Loading {name}…"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    spinner
}

/// Answers will come from the server `url` names ("" for the running one); it resolves the
/// model's name itself, loading the model if it does not hold it.
fn through_server(args: &RunArgs, url: &str) -> Result<Loaded, CliError> {
    if args.no_chat_template {
        return Err(CliError::usage(
            "--no-chat-template works on a model loaded here, not with --server",
        ));
    }
    // `--server` alone: MLXK_SERVER, else the recorded server (clap reads no environment for a
    // flag whose value is optional).
    let named = Some(url.to_string())
        .filter(|url| !url.is_empty())
        .or_else(|| std::env::var("MLXK_SERVER").ok().filter(|v| !v.is_empty()));
    let server = LocalServer::find(&ServerArgs { server: named })?;
    // Asked first, so that a server that is not there is said before any prompt is read.
    block_on(server.get("/api/ps"))??;
    Ok(Loaded {
        name: args.model.clone(),
        engine: Engine::Server(server),
    })
}

/// What `--json-schema` / `--json-object` ask the answer to be.
pub enum StructuredOutput {
    Object,
    Schema(serde_json::Value),
}

/// Reads `--json-schema FILE` (a JSON Schema object) or `--json-object`.
pub fn structured_output(args: &RunArgs) -> Result<Option<StructuredOutput>, CliError> {
    if args.json_object {
        return Ok(Some(StructuredOutput::Object));
    }
    let Some(path) = &args.json_schema else {
        return Ok(None);
    };
    let text = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("--json-schema {}: {e}", path.display())))?;
    match serde_json::from_slice(&text) {
        Ok(schema @ serde_json::Value::Object(_)) => Ok(Some(StructuredOutput::Schema(schema))),
        Ok(_) => Err(CliError::usage(format!(
            "--json-schema {}: not a JSON Schema object",
            path.display()
        ))),
        Err(e) => Err(CliError::usage(format!(
            "--json-schema {}: {e}",
            path.display()
        ))),
    }
}

fn sampling(args: &RunArgs) -> SamplingChoice {
    SamplingChoice {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    }
}

/// On a terminal, a model that is not in the cache is offered for download; true once pulled.
fn offer_pull(name: &str, output: &Output) -> Result<bool, CliError> {
    if output.json || !io::stdin().is_terminal() || !io::stderr().is_terminal() {
        return Ok(false);
    }
    let Ok(request) = mlxk_core::hub::pull::PullRequest::from_name(name, false) else {
        return Ok(false);
    };
    let question = format!(
        "{name} is not in the cache. Pull {} from the Hugging Face Hub now?",
        request.repo.as_str()
    );
    if !ask(&question, true) {
        return Ok(false);
    }
    let pulled = super::pull::run(
        &super::pull::PullArgs {
            model: name.to_string(),
            all_files: false,
        },
        output,
    )?;
    eprintln!("{}", pulled.text);
    Ok(true)
}

/// The answer and the reasoning of one generation.
struct Answer {
    content: String,
    reasoning: String,
    stats: Stats,
}

/// Generates one answer, streaming it when `stream` (the answer to stdout, reasoning to
/// stderr); stops early when `cancel` is set.
fn answer(
    args: &RunArgs,
    loaded: &Loaded,
    messages: &[ChatMessage],
    stream: bool,
    cancel: &AtomicBool,
) -> Result<Answer, CliError> {
    let (model, context_length) = match &loaded.engine {
        Engine::Here {
            model,
            context_length,
        } => (model, *context_length),
        Engine::Server(server) => {
            let remote = super::run_remote::answer(server, args, messages, stream, cancel)?;
            return Ok(Answer {
                content: remote.content,
                reasoning: remote.reasoning,
                stats: remote.stats,
            });
        }
    };
    let engine_error = |e: EngineError| match e {
        EngineError::ContextLengthExceeded { .. } => {
            CliError::new("context_length_exceeded", e.to_string())
        }
        other => CliError::new("execution_error", other.to_string()),
    };
    let mut options = AnswerOptions::text(
        sampling(args),
        args.max_tokens,
        context_length,
        args.stops.clone(),
        args.no_chat_template,
    );
    options.grammar = structured_output(args)?.map(|format| match format {
        StructuredOutput::Object => Grammar::JsonObject,
        StructuredOutput::Schema(schema) => Grammar::JsonSchema(schema),
    });
    let mut generation = model
        .start(&Prompt::Chat(messages.to_vec()), &options)
        .map_err(engine_error)?;
    let (mut content, mut reasoning) = (String::new(), String::new());
    while let Some(events) = generation.next_events().map_err(engine_error)? {
        for event in events {
            match event {
                TextEvent::Content(piece) => {
                    if stream {
                        let mut stdout = io::stdout().lock();
                        let _ = stdout.write_all(piece.as_bytes());
                        let _ = stdout.flush();
                    }
                    content.push_str(&piece);
                }
                TextEvent::Reasoning(piece) => {
                    if stream && !args.hide_reasoning {
                        eprint!("{piece}");
                    }
                    reasoning.push_str(&piece);
                }
                // `run` offers no tools: no calls to show.
                TextEvent::ToolCallStart { .. } | TextEvent::ToolCallArguments { .. } => {}
            }
        }
        if cancel.load(Ordering::Relaxed) {
            generation.finish(FinishReason::Cancelled);
        }
    }
    Ok(Answer {
        content,
        reasoning,
        stats: generation.into_generation().into(),
    })
}

fn report(stats: &Stats, engine: &Engine) {
    let whose = match engine {
        Engine::Here { .. } => format!("peak memory {:.2} GB", mlx_peak_memory_gb()),
        Engine::Server(server) => format!("served by {}", server.url),
    };
    eprintln!(
        "[prompt: {} tokens ({} cached), {:.1} tok/s, first token after {:.2} s | decode: {} tokens, {:.1} tok/s | {whose}]",
        stats.prompt_tokens,
        stats.cached_tokens,
        stats.prompt_tokens_per_second(),
        stats.prompt_time.as_secs_f64(),
        stats.generated_tokens,
        stats.decode_tokens_per_second(),
    );
}

fn mlx_peak_memory_gb() -> f64 {
    mlxk_engine::runtime::peak_memory_bytes() as f64 / 1e9
}

fn one_shot(
    args: &RunArgs,
    output: &Output,
    loaded: &Loaded,
    prompt: &str,
) -> Result<Outcome, CliError> {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", prompt));
    let stream = !output.json && !args.no_stream;
    let Answer {
        content: text,
        reasoning,
        stats,
    } = answer(args, loaded, &messages, stream, &AtomicBool::new(false))?;
    if stream {
        // The answer's line ends before any report: stats go on a line of their own.
        println!();
        let _ = io::stdout().flush();
    }
    if args.verbose {
        report(&stats, &loaded.engine);
    }
    if stats.finish_reason == FinishReason::Length {
        eprintln!(
            "[output cut at {} tokens: raise --max-tokens for more]",
            stats.generated_tokens
        );
    }
    let data = json!({
        "model": loaded.name,
        "prompt": prompt,
        "response": text,
        "reasoning": if reasoning.is_empty() { None } else { Some(&reasoning) },
        "finish_reason": stats.finish_reason,
        "tokens_generated": stats.generated_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "generation_time_s": (stats.prompt_time + stats.decode_time).as_secs_f64(),
        "stats": {
            "prompt_tokens_per_second": stats.prompt_tokens_per_second(),
            "decode_tokens_per_second": stats.decode_tokens_per_second(),
            "time_to_first_token_s": stats.prompt_time.as_secs_f64(),
            // This process's memory says nothing of a server's.
            "peak_memory_bytes": match loaded.engine {
                Engine::Here { .. } => Some(mlxk_engine::runtime::peak_memory_bytes()),
                Engine::Server(_) => None,
            },
        },
    });
    // Streamed text is already on screen, its line ended.
    let shown = if stream { String::new() } else { text };
    Ok(Outcome::new(data, shown))
}

fn chat(args: &RunArgs, loaded: &Loaded) -> Result<(), CliError> {
    let cancel = Arc::new(AtomicBool::new(false));
    let handler_flag = Arc::clone(&cancel);
    // Ctrl-C stops the answer being generated; the session goes on.
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed));
    eprintln!(
        "Chatting with {}. /help lists the commands; /bye ends; Ctrl-C stops an answer.",
        loaded.name
    );
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system));
    }
    let mut input = ChatInput::open();
    while let Some(line) = input.next_message() {
        let text = match ChatCommand::parse(&line) {
            ChatCommand::Empty => continue,
            ChatCommand::Bye => break,
            ChatCommand::Help => {
                eprintln!("{CHAT_HELP}");
                continue;
            }
            ChatCommand::Clear => {
                messages.retain(|m: &ChatMessage| m.role == "system");
                eprintln!("[the conversation is cleared]");
                continue;
            }
            ChatCommand::System(system) => {
                messages.retain(|m: &ChatMessage| m.role != "system");
                messages.insert(0, ChatMessage::new("system", &system));
                eprintln!("[system message set]");
                continue;
            }
            ChatCommand::Unknown(command) => {
                eprintln!("[unknown command {command}: /help lists them]");
                continue;
            }
            ChatCommand::Message(text) => text,
        };
        messages.push(ChatMessage::new("user", &text));
        cancel.store(false, Ordering::Relaxed);
        eprint!("Assistant: ");
        match answer(args, loaded, &messages, !args.no_stream, &cancel) {
            Ok(Answer {
                content: text,
                stats,
                ..
            }) => {
                if args.no_stream {
                    print!("{text}");
                }
                println!();
                if stats.finish_reason == FinishReason::Cancelled {
                    eprintln!("[stopped]");
                }
                if args.verbose {
                    report(&stats, &loaded.engine);
                }
                messages.push(ChatMessage::new("assistant", &text));
            }
            Err(e) => {
                eprintln!("\n[error] {}", e.message);
                messages.pop();
            }
        }
    }
    input.save_history();
    Ok(())
}

const CHAT_HELP: &str = "Commands:
  /bye (or exit, quit, q)  end the chat
  /clear                   forget the conversation (the system message stays)
  /system TEXT             set the system message
  /help                    this list
  \"\"\"                      start and end a message of several lines";

/// What a line typed in the chat means.
#[derive(Debug, PartialEq, Eq)]
enum ChatCommand {
    Empty,
    Bye,
    Help,
    Clear,
    System(String),
    Unknown(String),
    Message(String),
}

impl ChatCommand {
    fn parse(line: &str) -> ChatCommand {
        let trimmed = line.trim();
        match trimmed {
            "" => ChatCommand::Empty,
            "/bye" | "/exit" | "/quit" | "exit" | "quit" | "q" => ChatCommand::Bye,
            "/help" | "/?" => ChatCommand::Help,
            "/clear" => ChatCommand::Clear,
            _ => match trimmed.strip_prefix("/system") {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                    ChatCommand::System(rest.trim().to_string())
                }
                _ if trimmed.starts_with('/') && !trimmed.contains(char::is_whitespace) => {
                    ChatCommand::Unknown(trimmed.to_string())
                }
                _ => ChatCommand::Message(line.to_string()),
            },
        }
    }
}

/// Where chat lines come from: a line editor with history on a terminal, plain lines
/// otherwise (a pipe, a script).
enum ChatInput {
    Terminal {
        editor: Box<rustyline::DefaultEditor>,
        history: Option<std::path::PathBuf>,
    },
    Lines(io::Lines<io::StdinLock<'static>>),
}

impl ChatInput {
    fn open() -> ChatInput {
        if io::stdin().is_terminal() {
            if let Ok(mut editor) = rustyline::DefaultEditor::new() {
                let history = history_file();
                if let Some(path) = &history {
                    let _ = editor.load_history(path);
                }
                return ChatInput::Terminal {
                    editor: Box::new(editor),
                    history,
                };
            }
        }
        ChatInput::Lines(io::stdin().lock().lines())
    }

    /// The next message; a line of `"""` starts one of several lines, ended by another.
    /// `None` at the end of input (Ctrl-D).
    fn next_message(&mut self) -> Option<String> {
        let first = self.next_line("You: ")?;
        if first.trim() != "\"\"\"" {
            return Some(first);
        }
        let mut lines = Vec::new();
        while let Some(line) = self.next_line("... ") {
            if line.trim() == "\"\"\"" {
                break;
            }
            lines.push(line);
        }
        Some(lines.join("\n"))
    }

    fn next_line(&mut self, prompt: &str) -> Option<String> {
        match self {
            ChatInput::Terminal { editor, .. } => loop {
                match editor.readline(prompt) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        return Some(line);
                    }
                    // Ctrl-C at the prompt clears the line, as shells do.
                    Err(rustyline::error::ReadlineError::Interrupted) => continue,
                    Err(_) => return None,
                }
            },
            ChatInput::Lines(lines) => {
                eprint!("{prompt}");
                let _ = io::stderr().flush();
                lines.next()?.ok()
            }
        }
    }

    fn save_history(&mut self) {
        if let ChatInput::Terminal {
            editor,
            history: Some(path),
        } = self
        {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = editor.save_history(path);
        }
    }
}

/// `$XDG_STATE_HOME/mlxk/chat_history`, else `~/.local/state/mlxk/chat_history`.
fn history_file() -> Option<std::path::PathBuf> {
    crate::local_server::state_dir().map(|dir| dir.join("chat_history"))
}

#[cfg(test)]
mod tests {
    use super::ChatCommand;

    #[test]
    fn chat_lines_are_commands_or_messages() {
        for bye in ["/bye", "exit", "quit", "q", " /quit "] {
            assert_eq!(ChatCommand::parse(bye), ChatCommand::Bye, "{bye}");
        }
        assert_eq!(ChatCommand::parse("/clear"), ChatCommand::Clear);
        assert_eq!(
            ChatCommand::parse("/system Be brief."),
            ChatCommand::System("Be brief.".into())
        );
        assert_eq!(
            ChatCommand::parse("/sys"),
            ChatCommand::Unknown("/sys".into())
        );
        assert_eq!(ChatCommand::parse("   "), ChatCommand::Empty);
        // A path or a sentence that starts with a slash is a message.
        assert_eq!(
            ChatCommand::parse("/etc/hosts holds what?"),
            ChatCommand::Message("/etc/hosts holds what?".into())
        );
        assert_eq!(
            ChatCommand::parse("quitting?"),
            ChatCommand::Message("quitting?".into())
        );
    }
}
