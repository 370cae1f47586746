use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use mlxk_core::usage::UsageLog;
use mlxk_core::Library;
use mlxk_engine::{
    AnswerOptions, ChatMessage, EngineError, FinishReason, LoadPolicy, Prompt, RuntimeInfo,
    SamplingParams, TextEvent, TextModel,
};
use serde_json::json;

use super::WeightArgs;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: name, org/name, substring, or NAME@REVISION.
    pub model: String,
    /// The prompt (words are joined with spaces); `-` reads it from stdin. Without one: a chat.
    pub prompt: Vec<String>,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 picks the most likely token every time.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// 0 = off.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// 1 = off.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
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
    /// Do not show a reasoning model's thinking (`<think>…</think>`); it goes to stderr otherwise.
    #[arg(long)]
    pub hide_reasoning: bool,
    /// Report load time, weight layout, prompt and decode speed, time to first token and peak
    /// memory.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

struct Loaded {
    name: String,
    model: TextModel,
    context_length: usize,
}

pub fn run(args: &RunArgs, output: &Output) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let loaded = load(&args.model, &args.weights.policy()?)?;
    if args.verbose {
        eprintln!(
            "[loaded {} in {:.2} s; weights {}: {}; BLAS {}]",
            loaded.name,
            started.elapsed().as_secs_f64(),
            loaded.model.plan.layout.label(),
            loaded.model.plan.reason,
            RuntimeInfo::detect().blas.name,
        );
    }
    let prompt = match args.prompt.as_slice() {
        [] => None,
        [dash] if dash == "-" => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::new("io_error", e.to_string()))?;
            Some(text.trim_end().to_string())
        }
        words => Some(words.join(" ")),
    };
    match prompt {
        Some(prompt) => one_shot(args, output, &loaded, &prompt),
        None if output.json => Err(CliError::usage(
            "--json needs a prompt (an interactive chat has no single result)",
        )),
        None => chat(args, &loaded).map(|()| Outcome::new(json!(null), String::new())),
    }
}

fn load(name: &str, policy: &LoadPolicy) -> Result<Loaded, CliError> {
    let library = Library::from_env();
    let runnable = library.find_runnable(name)?;
    let model = TextModel::load(&runnable.dir, policy)
        .map_err(|e| CliError::new("execution_error", e.to_string()))?;
    // For the app's "last used"; a read-only cache must not stop a run.
    let _ = UsageLog::for_cache(library.cache()).record(&runnable.name);
    Ok(Loaded {
        name: runnable.name,
        context_length: runnable.context_length,
        model,
    })
}

fn sampling(args: &RunArgs) -> SamplingParams {
    SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        ..SamplingParams::default()
    }
}

/// The answer and the reasoning of one generation.
struct Answer {
    content: String,
    reasoning: String,
    generation: mlxk_engine::Generation,
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
    let engine_error = |e: EngineError| match e {
        EngineError::ContextLengthExceeded { .. } => {
            CliError::new("context_length_exceeded", e.to_string())
        }
        other => CliError::new("execution_error", other.to_string()),
    };
    let options = AnswerOptions {
        sampling: sampling(args),
        max_tokens: args.max_tokens,
        context_length: loaded.context_length,
        stops: args.stops.clone(),
        raw: args.no_chat_template,
    };
    let mut generation = loaded
        .model
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
            }
        }
        if cancel.load(Ordering::Relaxed) {
            generation.finish(FinishReason::Cancelled);
        }
    }
    Ok(Answer {
        content,
        reasoning,
        generation: generation.into_generation(),
    })
}

fn report(generation: &mlxk_engine::Generation) {
    eprintln!(
        "[prompt: {} tokens, {:.1} tok/s, first token after {:.2} s | decode: {} tokens, {:.1} tok/s | peak memory {:.2} GB]",
        generation.prompt_tokens,
        generation.prompt_tokens_per_second(),
        generation.prompt_time.as_secs_f64(),
        generation.tokens.len(),
        generation.decode_tokens_per_second(),
        mlx_peak_memory_gb(),
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
        generation,
    } = answer(args, loaded, &messages, stream, &AtomicBool::new(false))?;
    if args.verbose {
        report(&generation);
    }
    if generation.finish_reason == FinishReason::Length {
        eprintln!(
            "[output cut at {} tokens: raise --max-tokens for more]",
            generation.tokens.len()
        );
    }
    let data = json!({
        "model": loaded.name,
        "prompt": prompt,
        "response": text,
        "reasoning": if reasoning.is_empty() { None } else { Some(&reasoning) },
        "finish_reason": generation.finish_reason,
        "tokens_generated": generation.tokens.len(),
        "prompt_tokens": generation.prompt_tokens,
        "generation_time_s": (generation.prompt_time + generation.decode_time).as_secs_f64(),
        "stats": {
            "prompt_tokens_per_second": generation.prompt_tokens_per_second(),
            "decode_tokens_per_second": generation.decode_tokens_per_second(),
            "time_to_first_token_s": generation.prompt_time.as_secs_f64(),
            "peak_memory_bytes": mlxk_engine::runtime::peak_memory_bytes(),
        },
    });
    // Streamed text is already on screen; only the newline is left.
    let shown = if stream { String::from("\n") } else { text };
    Ok(Outcome::new(data, shown))
}

fn chat(args: &RunArgs, loaded: &Loaded) -> Result<(), CliError> {
    let cancel = Arc::new(AtomicBool::new(false));
    let handler_flag = Arc::clone(&cancel);
    // Ctrl-C stops the answer being generated; the session goes on.
    let _ = ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed));
    eprintln!(
        "Chatting with {}. Type 'exit' or 'quit' to end; Ctrl-C stops an answer.",
        loaded.name
    );
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new("system", system));
    }
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("You: ");
        let _ = io::stderr().flush();
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if matches!(line, "exit" | "quit") {
            break;
        }
        messages.push(ChatMessage::new("user", line));
        cancel.store(false, Ordering::Relaxed);
        eprint!("Assistant: ");
        match answer(args, loaded, &messages, !args.no_stream, &cancel) {
            Ok(Answer {
                content: text,
                generation,
                ..
            }) => {
                if args.no_stream {
                    print!("{text}");
                }
                println!();
                if generation.finish_reason == FinishReason::Cancelled {
                    eprintln!("[stopped]");
                }
                if args.verbose {
                    report(&generation);
                }
                messages.push(ChatMessage::new("assistant", &text));
            }
            Err(e) => {
                eprintln!("\n[error] {}", e.message);
                messages.pop();
            }
        }
    }
    Ok(())
}
