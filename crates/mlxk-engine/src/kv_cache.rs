//! The keys and values of past positions, one cache per layer.
//!
//! As mlx-lm's `KVCache`: buffers grow in steps of 256 positions and new entries are written in
//! place, so a decoding step does not copy the whole cache.

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::{Ellipsis, IndexOp, TryIndexMutOp};
use mlx_rs::Array;

use crate::error::Result;

const STEP: i32 = 256;

/// Keys and values laid out `[batch, kv_heads, positions, head_dim]`.
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

    /// Writes new keys and values and returns everything cached so far.
    pub fn update(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let previous = self.offset;
        let added = keys.shape()[2];
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if previous + added > capacity {
            let grow = |buffer: Option<Array>, new: &Array| -> Result<Array> {
                let shape = new.shape();
                let steps = (added + STEP - 1) / STEP;
                let fresh = Array::zeros::<f32>(&[shape[0], shape[1], steps * STEP, shape[3]])?
                    .as_dtype(new.dtype())?;
                Ok(match buffer {
                    Some(old) => concatenate(&[old.index((Ellipsis, ..previous, ..)), fresh], 2)?,
                    None => fresh,
                })
            };
            self.keys = Some(grow(self.keys.take(), &keys)?);
            self.values = Some(grow(self.values.take(), &values)?);
        }
        self.offset += added;
        let (k, v) = (
            self.keys.as_mut().expect("allocated"),
            self.values.as_mut().expect("allocated"),
        );
        k.try_index_mut((Ellipsis, previous..self.offset, ..), &keys)?;
        v.try_index_mut((Ellipsis, previous..self.offset, ..), &values)?;
        Ok((
            k.index((Ellipsis, ..self.offset, ..)),
            v.index((Ellipsis, ..self.offset, ..)),
        ))
    }

    /// The arrays to evaluate so the cache does not keep a growing lazy graph.
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }
}
