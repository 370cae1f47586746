//! Log-probabilities of the tokens a generation chose, with the likeliest alternatives at each
//! place (OpenAI's `logprobs` / `top_logprobs`). They are those of the distribution the
//! sampler drew from before temperature and truncation (after the repetition penalty and a
//! grammar's mask), as mlx-lm reports them.

/// One token: its id, its text (a token that ends inside a UTF-8 character shows the
/// replacement character; `bytes` has its own bytes), and its log-probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The chosen token and, most likely first, the `top` alternatives asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub chosen: Candidate,
    pub top: Vec<Candidate>,
}

/// Alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;
