//! Ollama's API on the stand-in engine: event sequences and error shapes.

#[allow(unused_imports)]
use super::*;
