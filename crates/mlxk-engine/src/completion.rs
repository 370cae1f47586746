//! A generation seen as text: tokens decoded as they come, stop strings applied, reasoning
//! split from the answer. The CLI and the server both consume generations through this.

use std::rc::Rc;

use crate::error::Result;
use crate::generate::{FinishReason, Generation, Generator};
use crate::text::{Reasoning, TextEvent, TextStream, THINK_START};
use crate::tokenizer::{StreamDecoder, Tokenizer};

pub struct TextGeneration {
    generator: Generator,
    tokenizer: Rc<Tokenizer>,
    decoder: StreamDecoder,
    text: TextStream,
    flushed: bool,
}

impl TextGeneration {
    /// `prompt_text` is the rendered prompt: when it opens a `<think>` block itself, the
    /// generation starts inside the reasoning.
    pub fn new(
        generator: Generator,
        tokenizer: Rc<Tokenizer>,
        stops: Vec<String>,
        prompt_text: &str,
    ) -> Self {
        let reasoning = if prompt_text.trim_end().ends_with(THINK_START) {
            Reasoning::SplitOpenedByPrompt
        } else {
            Reasoning::Split
        };
        TextGeneration {
            generator,
            tokenizer,
            decoder: StreamDecoder::default(),
            text: TextStream::new(stops, reasoning),
            flushed: false,
        }
    }

    /// The text of the next token (often none, sometimes several pieces); `None` once the
    /// generation is over and everything held back has been returned.
    pub fn next_events(&mut self) -> Result<Option<Vec<TextEvent>>> {
        let Some(token) = self.generator.next_token()? else {
            if self.flushed {
                return Ok(None);
            }
            self.flushed = true;
            return Ok(Some(self.text.finish()));
        };
        let mut events = Vec::new();
        if !self.tokenizer.eos_ids().contains(&token) {
            if let Some(piece) = self.decoder.step(&self.tokenizer, token)? {
                events = self.text.push(&piece);
            }
        }
        if self.text.stopped() {
            self.generator.finish(FinishReason::Stop);
        }
        Ok(Some(events))
    }

    /// Ends before the next token: `Cancelled` for a request given up (Ctrl-C, a disconnect),
    /// `Stop` for a clean end (shutdown). What was held back still comes out of `next_events`.
    pub fn finish(&mut self, reason: FinishReason) {
        self.generator.finish(reason);
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.generator.finish_reason()
    }

    pub fn into_generation(self) -> Generation {
        self.generator.into_generation()
    }
}
