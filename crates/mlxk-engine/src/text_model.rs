//! A language model ready to answer prompts: the one path from a prompt to a running
//! generation, shared by `mlxk run` and the server, so what a prompt can hold (tools, images,
//! audio) is added here once.

use std::cell::OnceCell;
use std::path::Path;
use std::rc::Rc;

use serde_json::Value;

use crate::batch::{Batch, SharedBatch};
use crate::completion::TextGeneration;
use crate::constraint::{Constraint, ConstraintFactory, Grammar};
use crate::error::{EngineError, Result};
use crate::generate::{Generator, Sequence};
use crate::load_plan::{LoadPlan, LoadPolicy};
use crate::models::{self, LanguageModel};
use crate::prefix_cache::{PrefixCache, PrefixStats, SharedPrefixCache};
use crate::sampler::SamplingChoice;
use crate::text::{THINK_END, THINK_START};
use crate::tokenizer::{ChatMessage, Tokenizer};
use crate::tool_calls::ToolFormat;
use crate::tool_use::ToolUse;

/// What a person asks: a conversation, or raw text sent as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

/// How one answer is generated.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// What the request chose; the rest comes from the model's defaults, then the shared ones.
    pub sampling: SamplingChoice,
    /// New tokens at most (the context bounds them too).
    pub max_tokens: usize,
    /// Prompt plus answer at most, in tokens.
    pub context_length: usize,
    /// The answer ends where one of these appears (never part of it).
    pub stops: Vec<String>,
    /// A conversation is sent as its messages' text, without the model's chat template.
    pub raw: bool,
    /// Tools the model may (or must) call.
    pub tools: Option<ToolUse>,
    /// A grammar the answer must match (`response_format`).
    pub grammar: Option<Grammar>,
    /// Report each token's log-probability and this many alternatives (`Some(0)`: none).
    pub logprobs: Option<usize>,
}

impl AnswerOptions {
    /// Plain text generation: no tools, no grammar.
    pub fn text(
        sampling: SamplingChoice,
        max_tokens: usize,
        context_length: usize,
        stops: Vec<String>,
        raw: bool,
    ) -> Self {
        AnswerOptions {
            sampling,
            max_tokens,
            context_length,
            stops,
            raw,
            tools: None,
            grammar: None,
            logprobs: None,
        }
    }
}

/// A loaded model with its tokenizer.
pub struct TextModel {
    pub model: Rc<dyn LanguageModel>,
    pub tokenizer: Rc<Tokenizer>,
    /// How its weights are laid out in memory.
    pub plan: LoadPlan,
    /// Its own sampling defaults (`generation_config.json`).
    pub sampling_defaults: SamplingChoice,
    /// How it writes tool calls, from its chat template and special tokens; `None` when the
    /// template has no tool support (tools are then offered in the generic format).
    pub tool_format: Option<ToolFormat>,
    /// Its template takes tools in a markup none of the known formats match: its calls are not
    /// parsed (tools go to it in the generic format), which a server says once, loudly.
    pub tool_format_unknown: bool,
    /// The width of its logits.
    vocab_size: usize,
    /// Made on the first constrained request (the token trie takes a moment to build).
    constraints: OnceCell<ConstraintFactory>,
    /// Keys and values of earlier prompts, when kept ([`TextModel::keep_prefixes`]).
    prefixes: Option<SharedPrefixCache>,
    /// The generations [`TextModel::join`] started, decoded together.
    batch: SharedBatch,
}

impl TextModel {
    /// Loads the MLX model folder `dir`: its tokenizer first (cheap, and the usual thing to
    /// be missing), then the weights as `policy` plans them.
    pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<Self> {
        let tokenizer = Rc::new(Tokenizer::load(dir)?);
        let loaded = models::load(dir, policy)?;
        let tool_format = ToolFormat::detect(tokenizer.chat_template(), &tokenizer.added_tokens());
        let tool_format_unknown = tool_format.is_none()
            && tokenizer
                .chat_template()
                .is_some_and(|t| t.contains("tools") && t.contains("tool_call"));
        let vocab_size = loaded
            .config
            .get("vocab_size")
            .or_else(|| loaded.config.pointer("/text_config/vocab_size"))
            .and_then(Value::as_u64)
            .map_or_else(
                || tokenizer.hf_tokenizer().get_vocab_size(true),
                |n| n as usize,
            );
        let batch = Batch::new(Rc::clone(&loaded.model)).shared();
        Ok(TextModel {
            model: loaded.model,
            tokenizer,
            plan: loaded.plan,
            sampling_defaults: SamplingChoice::from_generation_config(dir),
            tool_format,
            tool_format_unknown,
            vocab_size,
            constraints: OnceCell::new(),
            prefixes: None,
            batch,
        })
    }

    /// Keeps the keys and values of its prompts and answers, up to `bytes`, for later prompts
    /// that start the same way (0 keeps none).
    pub fn keep_prefixes(&mut self, bytes: usize) {
        self.prefixes = (bytes > 0).then(|| PrefixCache::shared(bytes));
    }

    /// What the prefix cache did so far (`None`: none is kept).
    pub fn prefix_stats(&self) -> Option<PrefixStats> {
        self.prefixes.as_ref().map(|p| p.borrow().stats())
    }

    /// What builds this model's grammar constraints.
    fn constraints(&self) -> Result<&ConstraintFactory> {
        if let Some(factory) = self.constraints.get() {
            return Ok(factory);
        }
        let factory = ConstraintFactory::new(
            self.tokenizer.hf_tokenizer(),
            self.tokenizer.eos_ids(),
            self.vocab_size,
        )?;
        Ok(self.constraints.get_or_init(|| factory))
    }

    /// The grammar an answer must match under `options`: a forced tool call, else the
    /// response format. Both at once cannot be honoured.
    fn grammar(&self, options: &AnswerOptions) -> Result<Option<Grammar>> {
        let forced = match options.tools.as_ref().filter(|t| t.active()) {
            Some(tools) => tools.call_grammar(
                self.tool_format.unwrap_or(ToolFormat::Hermes),
                self.tool_format.is_some(),
            )?,
            None => None,
        };
        match (forced, &options.grammar) {
            (Some(_), Some(_)) => Err(EngineError::Grammar(
                "a tool grammar (a required or named tool_choice, or strict tools) and a response_format cannot both be enforced"
                    .into(),
            )),
            (Some(forced), None) => Ok(Some(forced)),
            (None, grammar) => Ok(grammar.clone()),
        }
    }

    /// The sequence `prompt` starts: rendered, tokenized, held to its grammar, starting from
    /// a kept prefix; with its rendered text, and the grammar that holds only once the
    /// reasoning the prompt opened has ended (if any).
    fn sequence(
        &self,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<(Sequence, String, Option<Constraint>)> {
        let tools = options.tools.as_ref().filter(|t| t.active());
        let text = prompt_text(
            &self.tokenizer,
            self.tool_format,
            prompt,
            options.raw,
            tools,
        )?;
        let ids = self.tokenizer.encode(&text)?;
        let constraint = match self.grammar(options)? {
            Some(grammar) => Some(self.constraints()?.start(&grammar)?),
            None => None,
        };
        // A reasoning model thinks freely; the grammar holds for the answer after it.
        let (now, after_reasoning) = match constraint {
            Some(c) if text.trim_end().ends_with(THINK_START) => (None, Some(c)),
            c => (c, None),
        };
        let mut sequence = Sequence::new(
            &ids,
            options.max_tokens,
            options.context_length,
            self.tokenizer.eos_ids(),
            &options.sampling.or(self.sampling_defaults).resolve(),
            now,
        )?;
        if let Some(prefixes) = &self.prefixes {
            sequence.reuse_prefixes(prefixes);
        }
        if let Some(top) = options.logprobs {
            sequence.report_logprobs(top);
        }
        Ok((sequence, text, after_reasoning))
    }

    /// Prefills the prompt and returns the generation, ready to be stepped token by token (in
    /// a batch of its own).
    pub fn start(&self, prompt: &Prompt, options: &AnswerOptions) -> Result<TextGeneration> {
        let (sequence, text, after_reasoning) = self.sequence(prompt, options)?;
        let mut generator = Generator::solo(Rc::clone(&self.model), sequence);
        generator.prefill()?;
        if let Some(constraint) = after_reasoning {
            generator.hold_after(constraint, self.tokenizer.encode_plain(THINK_END)?);
        }
        Ok(self.text_generation(generator, &text, options))
    }

    /// Puts the prompt's generation into this model's batch, without computing anything: the
    /// batch's steps ([`TextModel::step`]) prefill it and decode it with the others.
    pub fn join(&self, prompt: &Prompt, options: &AnswerOptions) -> Result<TextGeneration> {
        let (mut sequence, text, after_reasoning) = self.sequence(prompt, options)?;
        if let Some(constraint) = after_reasoning {
            sequence.hold_after(constraint, self.tokenizer.encode_plain(THINK_END)?);
        }
        let generator = Generator::joining(&self.batch, sequence);
        Ok(self.text_generation(generator, &text, options))
    }

    /// One step of the batch the joined generations share: every row gets its next token, and
    /// a waiting prompt is prefilled a chunk further.
    pub fn step(&self) -> Result<()> {
        self.batch.borrow_mut().step()
    }

    /// Whether a joined generation waits for a step.
    pub fn is_busy(&self) -> bool {
        self.batch.borrow().is_busy()
    }

    fn text_generation(
        &self,
        generator: Generator,
        text: &str,
        options: &AnswerOptions,
    ) -> TextGeneration {
        let generation = TextGeneration::new(
            generator,
            Rc::clone(&self.tokenizer),
            options.stops.clone(),
            text,
        );
        match options.tools.as_ref().filter(|t| t.active()) {
            Some(_) => generation.with_tool_calls(self.tool_format.unwrap_or(ToolFormat::Hermes)),
            None => generation,
        }
    }
}

/// The text a prompt is sent to the model as, with the tools offered (`None` or inactive: no
/// tools): through the model's own template when it knows tools, else described in the generic
/// format.
fn prompt_text(
    tokenizer: &Tokenizer,
    tool_format: Option<ToolFormat>,
    prompt: &Prompt,
    raw: bool,
    tools: Option<&ToolUse>,
) -> Result<String> {
    match (prompt, tools.filter(|t| t.active()), tool_format) {
        (Prompt::Chat(_), Some(tools), Some(_)) => {
            tokenizer.render_prompt(prompt, raw, Some(&tools.template_tools()))
        }
        // The template knows no tools: they are described in the generic format.
        (Prompt::Chat(messages), Some(tools), None) => tokenizer.render_prompt(
            &Prompt::Chat(tools.generic_conversation(messages)),
            raw,
            None,
        ),
        _ => tokenizer.render_prompt(prompt, raw, None),
    }
}

/// How many tokens `prompt` takes with `tools` offered, as [`TextModel::start`] would prefill
/// it for the model in `dir`. Only the tokenizer and its chat template are read, never the
/// weights: a client can count a prompt without the model in memory.
pub fn prompt_tokens(dir: &Path, prompt: &Prompt, tools: Option<&ToolUse>) -> Result<usize> {
    let tokenizer = Tokenizer::load(dir)?;
    let tool_format = ToolFormat::detect(tokenizer.chat_template(), &tokenizer.added_tokens());
    let text = prompt_text(&tokenizer, tool_format, prompt, false, tools)?;
    Ok(tokenizer.encode(&text)?.len())
}
