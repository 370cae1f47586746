//! A generation seen as text: tokens decoded as they come, stop strings applied, reasoning
//! split from the answer, tool calls parsed out of it. The CLI and the server both consume
//! generations through this.

use std::rc::Rc;

use crate::batch::Poll;
use crate::constraint::bytes_of_token;
use crate::error::Result;
use crate::generate::{FinishReason, Generation, Generator};
use crate::logprobs::{Candidate, TokenLogprob};
use crate::text::{Reasoning, TextEvent, TextStream, THINK_START};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::tool_calls::{ToolCallParser, ToolEvent, ToolFormat};

pub struct TextGeneration {
    generator: Generator,
    tokenizer: Rc<Tokenizer>,
    decoder: StreamDecoder,
    text: TextStream,
    /// Parses the calls out of the answer when tools are offered.
    tool_calls: Option<ToolCallParser>,
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
            tool_calls: None,
            flushed: false,
        }
    }

    /// Parses tool calls in `format` out of the answer (decoding special tokens when the
    /// format's markers are special tokens).
    pub fn with_tool_calls(mut self, format: ToolFormat) -> Self {
        if format.needs_special_tokens() {
            self.decoder = StreamDecoder::keeping_special_tokens();
        }
        self.tool_calls = Some(ToolCallParser::new(format));
        self
    }

    /// The text of the tokens read since the last call (often none, sometimes several
    /// pieces); `None` once the generation is over and everything held back has been returned.
    /// A generation in a batch of its own steps it for its next token; one in a shared batch
    /// takes what that batch's steps read (`Some(vec![])` while none came).
    pub fn next_events(&mut self) -> Result<Option<Vec<TextEvent>>> {
        if self.flushed {
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut read = false;
        loop {
            match self.generator.poll()? {
                Poll::Token(token) => {
                    read = true;
                    events.extend(self.token_text(token)?);
                }
                Poll::Pending if !read && self.generator.drives() => self.generator.step()?,
                Poll::Pending => return Ok(Some(self.parse_calls(events, false))),
                Poll::Done => {
                    self.flushed = true;
                    events.extend(self.text.finish());
                    return Ok(Some(self.parse_calls(events, true)));
                }
            }
        }
    }

    /// A token's text; a stop string in it ends the generation.
    fn token_text(&mut self, token: u32) -> Result<Vec<TextEvent>> {
        let mut events = Vec::new();
        if !self.tokenizer.eos_ids().contains(&token) {
            if let Some(piece) = self.decoder.step(&self.tokenizer, token)? {
                events = self.text.push(&piece);
            }
        }
        if self.text.stopped() {
            self.generator.finish(FinishReason::Stop);
        }
        Ok(events)
    }

    /// The answer's text through the tool-call parser, when tools are offered.
    fn parse_calls(&mut self, events: Vec<TextEvent>, end: bool) -> Vec<TextEvent> {
        let Some(parser) = self.tool_calls.as_mut() else {
            return events;
        };
        let mut parsed = Vec::new();
        for event in events {
            match event {
                TextEvent::Content(text) => {
                    parsed.extend(parser.push(&text).into_iter().filter_map(text_event))
                }
                reasoning => parsed.push(reasoning),
            }
        }
        if end {
            parsed.extend(parser.finish().into_iter().filter_map(text_event));
        }
        parsed
    }

    /// Ends before the next token: `Cancelled` for a request given up (Ctrl-C, a disconnect),
    /// `Stop` for a clean end (shutdown). What was held back still comes out of `next_events`.
    pub fn finish(&mut self, reason: FinishReason) {
        self.generator.finish(reason);
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.generator.finish_reason()
    }

    /// The stop string the answer ended at, if it ended at one (not at the end of its turn).
    pub fn matched_stop(&self) -> Option<&str> {
        self.text.matched_stop()
    }

    /// Reports each token's log-probability with `top` alternatives from the next token on.
    pub fn report_logprobs(&mut self, top: usize) {
        self.generator.report_logprobs(top);
    }

    /// The log-probabilities of the tokens generated since the last call, with their text.
    pub fn take_logprobs(&mut self) -> Result<Vec<TokenLogprob>> {
        let candidate = |id: u32, logprob: f32| -> Result<Candidate> {
            let text = self.tokenizer.decode_with_special(&[id])?;
            // A token inside a UTF-8 character decodes to U+FFFD; its bytes are still known.
            let bytes = match text.contains('\u{FFFD}') {
                true => bytes_of_token(self.tokenizer.hf_tokenizer(), id)
                    .unwrap_or_else(|| text.clone().into_bytes()),
                false => text.clone().into_bytes(),
            };
            Ok(Candidate {
                id,
                text,
                bytes,
                logprob,
            })
        };
        let eos = self.tokenizer.eos_ids();
        self.generator
            .take_logprobs()
            .into_iter()
            // The end of the answer is not part of its text.
            .filter(|raw| !eos.contains(&raw.token))
            .map(|raw| {
                Ok(TokenLogprob {
                    chosen: candidate(raw.token, raw.logprob)?,
                    top: raw
                        .top
                        .iter()
                        .map(|&(id, logprob)| candidate(id, logprob))
                        .collect::<Result<_>>()?,
                })
            })
            .collect()
    }

    pub fn into_generation(self) -> Generation {
        self.generator.into_generation()
    }
}

/// A parser's event as a text event (the end of a call adds nothing to the text).
fn text_event(event: ToolEvent) -> Option<TextEvent> {
    match event {
        ToolEvent::Content(text) => Some(TextEvent::Content(text)),
        ToolEvent::Reasoning(text) => Some(TextEvent::Reasoning(text)),
        ToolEvent::CallStart { index, id, name } => {
            Some(TextEvent::ToolCallStart { index, id, name })
        }
        ToolEvent::Arguments { index, fragment } => {
            Some(TextEvent::ToolCallArguments { index, fragment })
        }
        ToolEvent::CallEnd { .. } => None,
    }
}
