//! A language model ready to answer prompts: the one path from a prompt to a running
//! generation, shared by `mlxk run` and the server, so what a prompt can hold (tools, images,
//! audio) is added here once.

use std::path::Path;
use std::rc::Rc;

use crate::completion::TextGeneration;
use crate::error::Result;
use crate::generate::Generator;
use crate::load_plan::{LoadPlan, LoadPolicy};
use crate::models::{self, LanguageModel};
use crate::sampler::SamplingChoice;
use crate::tokenizer::{ChatMessage, Tokenizer};

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
}

/// A loaded model with its tokenizer.
pub struct TextModel {
    pub model: Rc<dyn LanguageModel>,
    pub tokenizer: Rc<Tokenizer>,
    /// How its weights are laid out in memory.
    pub plan: LoadPlan,
    /// Its own sampling defaults (`generation_config.json`).
    pub sampling_defaults: SamplingChoice,
}

impl TextModel {
    /// Loads the MLX model folder `dir`: its tokenizer first (cheap, and the usual thing to
    /// be missing), then the weights as `policy` plans them.
    pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<Self> {
        let tokenizer = Rc::new(Tokenizer::load(dir)?);
        let loaded = models::load(dir, policy)?;
        Ok(TextModel {
            model: loaded.model,
            tokenizer,
            plan: loaded.plan,
            sampling_defaults: SamplingChoice::from_generation_config(dir),
        })
    }

    /// Prefills the prompt and returns the generation, ready to be stepped token by token.
    pub fn start(&self, prompt: &Prompt, options: &AnswerOptions) -> Result<TextGeneration> {
        let text = self.tokenizer.render_prompt(prompt, options.raw)?;
        let ids = self.tokenizer.encode(&text)?;
        let generator = Generator::new(
            Rc::clone(&self.model),
            &ids,
            options.max_tokens,
            options.context_length,
            self.tokenizer.eos_ids(),
            &options.sampling.or(self.sampling_defaults).resolve(),
        )?;
        Ok(TextGeneration::new(
            generator,
            Rc::clone(&self.tokenizer),
            options.stops.clone(),
            &text,
        ))
    }
}
