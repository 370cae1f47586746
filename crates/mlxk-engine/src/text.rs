//! From decoded pieces to what a user sees: stop strings that are never emitted (even when
//! they span tokens), and reasoning (`<think>…</think>`, as Qwen3 and DeepSeek-R1 write it)
//! split from the answer so callers can show or hide it.

use serde::Serialize;

pub const THINK_START: &str = "<think>";
pub const THINK_END: &str = "</think>";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum TextEvent {
    Content(String),
    Reasoning(String),
    /// A tool call begins: its place among the answer's calls, its id and the function.
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A piece of a call's arguments (their JSON object text, in order).
    ToolCallArguments {
        index: usize,
        fragment: String,
    },
}

/// What a stream does with `<think>` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// Left in the content as the model wrote it.
    InContent,
    /// Split from the content.
    Split,
    /// Split, and the prompt itself opened the block (some chat templates do).
    SplitOpenedByPrompt,
}

/// Feeds on decoded text, holds back only what might still become a stop string or a tag.
pub struct TextStream {
    stops: Vec<String>,
    split_reasoning: bool,
    in_reasoning: bool,
    pending: String,
    /// The stop string the text ended at, once one has been seen.
    matched: Option<String>,
}

impl TextStream {
    pub fn new(stops: Vec<String>, reasoning: Reasoning) -> Self {
        TextStream {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            split_reasoning: reasoning != Reasoning::InContent,
            in_reasoning: reasoning == Reasoning::SplitOpenedByPrompt,
            pending: String::new(),
            matched: None,
        }
    }

    /// Whether a stop string has been seen: generation should end.
    pub fn stopped(&self) -> bool {
        self.matched.is_some()
    }

    /// The stop string the text ended at (the first in the text; of two starting at the same
    /// place, the one listed first).
    pub fn matched_stop(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    pub fn push(&mut self, text: &str) -> Vec<TextEvent> {
        let mut events = Vec::new();
        if self.stopped() {
            return events;
        }
        self.pending.push_str(text);
        loop {
            if self.in_reasoning {
                if let Some(at) = self.pending.find(THINK_END) {
                    emit(
                        &mut events,
                        TextEvent::Reasoning(self.pending[..at].to_string()),
                    );
                    self.pending.drain(..at + THINK_END.len());
                    self.in_reasoning = false;
                    continue;
                }
                let keep = partial_suffix(&self.pending, &[THINK_END]);
                let ready = self.pending.len() - keep;
                emit(
                    &mut events,
                    TextEvent::Reasoning(self.pending.drain(..ready).collect()),
                );
                return events;
            }
            let stop = self
                .stops
                .iter()
                .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at);
            let think = if self.split_reasoning {
                self.pending.find(THINK_START)
            } else {
                None
            };
            match (stop, think) {
                (Some((at, matched)), t) if t.is_none_or(|t| at <= t) => {
                    emit(
                        &mut events,
                        TextEvent::Content(self.pending[..at].to_string()),
                    );
                    self.matched = Some(matched.clone());
                    self.pending.clear();
                    return events;
                }
                (_, Some(at)) => {
                    emit(
                        &mut events,
                        TextEvent::Content(self.pending[..at].to_string()),
                    );
                    self.pending.drain(..at + THINK_START.len());
                    self.in_reasoning = true;
                }
                _ => {
                    let mut watched: Vec<&str> = self.stops.iter().map(String::as_str).collect();
                    if self.split_reasoning {
                        watched.push(THINK_START);
                    }
                    let keep = partial_suffix(&self.pending, &watched);
                    let ready = self.pending.len() - keep;
                    emit(
                        &mut events,
                        TextEvent::Content(self.pending.drain(..ready).collect()),
                    );
                    return events;
                }
            }
        }
    }

    /// What was held back, once generation has ended without completing a stop string.
    pub fn finish(&mut self) -> Vec<TextEvent> {
        let mut events = Vec::new();
        if !self.stopped() {
            let rest = std::mem::take(&mut self.pending);
            emit(
                &mut events,
                if self.in_reasoning {
                    TextEvent::Reasoning(rest)
                } else {
                    TextEvent::Content(rest)
                },
            );
        }
        events
    }
}

fn emit(events: &mut Vec<TextEvent>, event: TextEvent) {
    let empty =
        matches!(&event, TextEvent::Content(text) | TextEvent::Reasoning(text) if text.is_empty());
    if !empty {
        events.push(event);
    }
}

/// The length of the longest end of `text` that begins one of `patterns` without completing it.
fn partial_suffix(text: &str, patterns: &[&str]) -> usize {
    patterns
        .iter()
        .flat_map(|p| {
            (1..p.len())
                .rev()
                .filter(move |&k| p.is_char_boundary(k))
                .map(move |k| &p[..k])
        })
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stream: &mut TextStream, pieces: &[&str]) -> (String, String) {
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut all: Vec<TextEvent> = pieces.iter().flat_map(|p| stream.push(p)).collect();
        all.extend(stream.finish());
        for event in all {
            match event {
                TextEvent::Content(t) => content.push_str(&t),
                TextEvent::Reasoning(t) => reasoning.push_str(&t),
                other => panic!("a text stream makes no tool calls: {other:?}"),
            }
        }
        (content, reasoning)
    }

    #[test]
    fn stop_strings_spanning_pieces_are_never_emitted() {
        let mut stream = TextStream::new(vec!["\nUser:".into()], Reasoning::InContent);
        let (content, _) = run(&mut stream, &["Hello", " there\n", "Us", "er:", " more"]);
        assert_eq!(content, "Hello there");
        assert!(stream.stopped());
    }

    #[test]
    fn the_stop_string_the_text_ended_at_is_known() {
        let stops = vec!["END".to_string(), "\n\n".to_string(), "D".to_string()];
        let mut stream = TextStream::new(stops.clone(), Reasoning::InContent);
        let (content, _) = run(&mut stream, &["one\n", "\ntwo END"]);
        assert_eq!(
            (content.as_str(), stream.matched_stop()),
            ("one", Some("\n\n"))
        );
        let mut stream = TextStream::new(stops, Reasoning::InContent);
        run(&mut stream, &["an ", "END"]);
        assert_eq!(
            stream.matched_stop(),
            Some("END"),
            "the earliest in the text"
        );
        let mut stream = TextStream::new(vec!["X".into()], Reasoning::InContent);
        run(&mut stream, &["no stop"]);
        assert_eq!(stream.matched_stop(), None);
    }

    #[test]
    fn near_misses_are_released() {
        let mut stream = TextStream::new(vec!["STOP".into()], Reasoning::InContent);
        let (content, _) = run(&mut stream, &["ST", "OP", "!"]);
        assert_eq!(content, "");
        let mut stream = TextStream::new(vec!["STOP".into()], Reasoning::InContent);
        let (content, _) = run(&mut stream, &["ST", "ART", " now ST"]);
        assert_eq!(
            (content.as_str(), stream.stopped()),
            ("START now ST", false)
        );
    }

    #[test]
    fn reasoning_is_split_from_the_answer() {
        let mut stream = TextStream::new(vec![], Reasoning::Split);
        let (content, reasoning) = run(
            &mut stream,
            &[
                "<th",
                "ink>Let me",
                " think</thi",
                "nk>The answer",
                " is 4.",
            ],
        );
        assert_eq!(reasoning, "Let me think");
        assert_eq!(content, "The answer is 4.");

        let mut opened_by_prompt = TextStream::new(vec![], Reasoning::SplitOpenedByPrompt);
        let (content, reasoning) = run(&mut opened_by_prompt, &["hmm</think>", "Done"]);
        assert_eq!((content.as_str(), reasoning.as_str()), ("Done", "hmm"));

        let mut off = TextStream::new(vec![], Reasoning::InContent);
        let (content, _) = run(&mut off, &["<think>x</think>y"]);
        assert_eq!(content, "<think>x</think>y");
    }

    #[test]
    fn multibyte_text_is_handled_at_char_boundaries() {
        let mut stream = TextStream::new(vec!["ünd".into()], Reasoning::InContent);
        let (content, _) = run(&mut stream, &["Grü", "ße ü", "nd mehr"]);
        assert_eq!(content, "Grüße ");
    }
}
