//! The keys and values of past positions, one cache per layer.

use mlx_rs::ops::concatenate;
use mlx_rs::Array;

use crate::error::Result;

/// Keys and values laid out `[batch, kv_heads, positions, head_dim]`, grown along positions.
#[derive(Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    pub fn new_per_layer(layers: usize) -> Vec<KvCache> {
        (0..layers).map(|_| KvCache::default()).collect()
    }

    /// Positions already cached: the RoPE offset of the next token.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Appends new keys and values and returns everything cached so far.
    pub fn update(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let added = keys.shape()[2];
        let (keys, values) = match (self.keys.take(), self.values.take()) {
            (Some(k), Some(v)) => (concatenate(&[k, keys], 2)?, concatenate(&[v, values], 2)?),
            _ => (keys, values),
        };
        self.offset += added;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        Ok((keys, values))
    }

    /// The arrays to evaluate so the cache does not keep a growing lazy graph.
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }
}
