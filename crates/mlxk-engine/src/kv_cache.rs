//! The keys and values of past positions, one cache per layer.
//!
//! As mlx-lm's `KVCache`: buffers grow in steps of 256 positions and new entries are written in
//! place, so a decoding step does not copy the whole cache. A cache for a sliding-window layer
//! (`with_window`) drops positions that no query can see any more, so its memory stays bounded
//! (mlx-lm's `RotatingKVCache` does the same with a ring buffer).
//!
//! The cache also decides what attention may see ([`KvCache::update_and_attend`]): which keys
//! and which mask, so that a model's attention does not repeat the window logic.

use mlx_rs::fast::ScaledDotProductAttentionMask;
use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::{Ellipsis, IndexOp, TryIndexMutOp};
use mlx_rs::Array;

use crate::error::Result;

const STEP: i32 = 256;

/// The RoPE offsets of the next tokens: the positions each sequence has seen.
pub enum RowOffsets {
    /// One sequence (`fast::rope` with a scalar offset).
    One(i32),
    /// One int32 offset per row, `[rows]` (`fast::rope_dynamic`).
    PerRow(Array),
}

/// What attention reads once a cache took the new keys and values.
pub struct Attend {
    pub keys: Array,
    pub values: Array,
    pub mask: AttentionMask,
}

/// Which of the returned keys each query may see.
pub enum AttentionMask {
    /// All of them.
    None,
    /// Query `i` of `L` sees the keys up to `T - L + i` (the queries are the last `L` keys).
    Causal,
    /// Booleans, `true` where a query may look: `[L, T]`.
    Array(Array),
}

impl AttentionMask {
    /// The mask as `fast::scaled_dot_product_attention` takes it.
    pub fn sdpa(&self) -> Option<ScaledDotProductAttentionMask<'_>> {
        match self {
            AttentionMask::None => None,
            AttentionMask::Causal => Some(ScaledDotProductAttentionMask::Causal),
            AttentionMask::Array(mask) => Some(ScaledDotProductAttentionMask::Array(mask)),
        }
    }

    /// The mask as booleans for attention written out by hand (Gemma 2), for `queries`
    /// queries over `keys` keys; `None` when every key is visible.
    pub fn to_array(&self, queries: i32, keys: i32) -> Result<Option<Array>> {
        Ok(match self {
            AttentionMask::None => None,
            AttentionMask::Causal => {
                // Built on the device: the same booleans as `causal_mask(queries, keys -
                // queries, 0, None)`, without a host loop in every layer.
                let key = Array::arange::<_, i32>(None, keys, None)?.reshape(&[1, keys])?;
                let query =
                    Array::arange::<_, i32>(keys - queries, keys, None)?.reshape(&[queries, 1])?;
                Some(key.le(&query)?)
            }
            AttentionMask::Array(mask) => Some(mask.clone()),
        })
    }
}

/// A boolean causal mask for `length` queries at positions `offset..` over the keys stored from
/// position `key_start` on, limited to the last `window` positions when given.
pub fn causal_mask(length: i32, offset: i32, key_start: i32, window: Option<i32>) -> Array {
    let keys = offset + length - key_start;
    let allowed: Vec<bool> = (0..length)
        .flat_map(|i| {
            let q = offset + i;
            (0..keys).map(move |j| {
                let k = key_start + j;
                k <= q && window.is_none_or(|w| k > q - w)
            })
        })
        .collect();
    Array::from_slice(&allowed, &[length, keys])
}

/// Keys and values laid out `[batch, kv_heads, positions, head_dim]`. A clone shares the
/// buffers until one of them is written (MLX arrays are values), so a kept cache can seed any
/// number of later generations.
#[derive(Default, Clone)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Positions seen so far: the RoPE offset of the next token.
    offset: i32,
    /// Absolute position of the first stored entry (0 unless a window dropped older ones).
    start: i32,
    window: Option<i32>,
}

impl KvCache {
    pub fn new_per_layer(layers: usize) -> Vec<KvCache> {
        (0..layers).map(|_| KvCache::default()).collect()
    }

    /// A cache that keeps at least the last `window` positions, and not many more.
    pub fn with_window(window: i32) -> Self {
        KvCache {
            window: Some(window),
            ..KvCache::default()
        }
    }

    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Absolute position of the first key that [`KvCache::update`] returns.
    pub fn start(&self) -> i32 {
        self.start
    }

    /// Writes new keys and values and returns every stored position (from [`KvCache::start`]).
    pub fn update(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let added = keys.shape()[2];
        let stored = self.offset - self.start;
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if stored + added > capacity {
            // Grow, dropping what a window no longer needs: the last `window - 1` old positions
            // are all the first new query can see.
            let keep_from = match self.window {
                Some(w) => (stored - (w - 1)).max(0),
                None => 0,
            };
            let grow = |buffer: Option<Array>, new: &Array| -> Result<Array> {
                let shape = new.shape();
                let steps = (added + STEP - 1) / STEP;
                let fresh = Array::zeros::<f32>(&[shape[0], shape[1], steps * STEP, shape[3]])?
                    .as_dtype(new.dtype())?;
                Ok(match buffer {
                    Some(old) => {
                        concatenate(&[old.index((Ellipsis, keep_from..stored, ..)), fresh], 2)?
                    }
                    None => fresh,
                })
            };
            self.keys = Some(grow(self.keys.take(), &keys)?);
            self.values = Some(grow(self.values.take(), &values)?);
            self.start += keep_from;
        }
        let at = self.offset - self.start;
        self.offset += added;
        let end = self.offset - self.start;
        let (k, v) = (
            self.keys.as_mut().expect("allocated"),
            self.values.as_mut().expect("allocated"),
        );
        k.try_index_mut((Ellipsis, at..end, ..), &keys)?;
        v.try_index_mut((Ellipsis, at..end, ..), &values)?;
        Ok((
            k.index((Ellipsis, ..end, ..)),
            v.index((Ellipsis, ..end, ..)),
        ))
    }

    /// The RoPE offsets of the next tokens. Every layer has the same: take them from the first
    /// layer's cache before it is written.
    pub fn row_offsets(&self) -> RowOffsets {
        RowOffsets::One(self.offset)
    }

    /// Writes new keys and values `[1, kv_heads, L, head_dim]` and returns what the `L` new
    /// queries attend to: every stored key under a causal mask, or, for a sliding window, only
    /// the keys inside it.
    pub fn update_and_attend(&mut self, keys: Array, values: Array) -> Result<Attend> {
        let length = keys.shape()[2];
        let offset = self.offset;
        let (mut keys, mut values) = self.update(keys, values)?;
        let (key_start, total) = (self.start, offset + length);
        let mask = match self.window {
            Some(window) if length == 1 && total - key_start > window => {
                // Decoding past the window: only the last `window` positions are attended.
                let stored = total - key_start;
                let recent =
                    Array::from_slice(&(stored - window..stored).collect::<Vec<i32>>(), &[window]);
                keys = keys.take_axis(&recent, 2)?;
                values = values.take_axis(&recent, 2)?;
                AttentionMask::None
            }
            Some(window) if length > 1 && (total > window || key_start > 0) => {
                AttentionMask::Array(causal_mask(length, offset, key_start, Some(window)))
            }
            _ if length > 1 => AttentionMask::Causal,
            _ => AttentionMask::None,
        };
        Ok(Attend { keys, values, mask })
    }

    /// Forgets every position from `positions` on, so that the next update continues from
    /// there. `false` (and unchanged) when that cannot be exact: a window already dropped
    /// positions the next query would see.
    pub fn truncate(&mut self, positions: i32) -> bool {
        if positions > self.offset || positions < 0 {
            return false;
        }
        let exact = match self.window {
            Some(w) => self.start == 0 || positions - (w - 1) >= self.start,
            None => true,
        };
        if exact {
            self.offset = positions;
        }
        exact
    }

    /// The memory its buffers hold.
    pub fn bytes(&self) -> usize {
        self.arrays().map(|a| a.nbytes()).sum()
    }

    /// The arrays to evaluate so the cache does not keep a growing lazy graph.
    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_cache_continues_from_the_cut() {
        let entry = |p: i32| Array::from_slice(&[p as f32], &[1, 1, 1, 1]);
        let mut cache = KvCache::default();
        for position in 0..10 {
            cache.update(entry(position), entry(position)).unwrap();
        }
        let kept = cache.clone();
        assert!(cache.truncate(6));
        let (keys, _) = cache.update(entry(60), entry(60)).unwrap();
        let keys = keys.reshape(&[-1]).unwrap();
        assert_eq!(keys.as_slice::<f32>(), [0., 1., 2., 3., 4., 5., 60.]);
        // The clone kept its own positions.
        assert_eq!(kept.offset(), 10);
        assert!(!cache.truncate(8), "past the end");

        let mut windowed = KvCache::with_window(4);
        for position in 0..600 {
            windowed.update(entry(position), entry(position)).unwrap();
        }
        assert!(windowed.start() > 0);
        assert!(
            windowed.truncate(590),
            "the window still holds what position 590 sees"
        );
        assert!(
            !windowed.truncate(windowed.start()),
            "dropped positions cannot come back"
        );
    }

    #[test]
    fn a_windowed_cache_stays_bounded_and_keeps_the_recent_positions() {
        let window = 4;
        let mut cache = KvCache::with_window(window);
        for position in 0..700 {
            let entry = Array::from_slice(&[position as f32], &[1, 1, 1, 1]);
            let (keys, _) = cache.update(entry.clone(), entry).unwrap();
            let stored = keys.shape()[2];
            assert!(
                stored <= window - 1 + 2 * STEP,
                "bounded: {stored} positions stored"
            );
            assert_eq!(cache.start() + stored, position + 1);
            let values = keys.reshape(&[-1]).unwrap();
            let values = values.as_slice::<f32>();
            // The last `window` stored entries are the last `window` positions, in order.
            let tail: Vec<f32> = values[values.len().saturating_sub(window as usize)..].to_vec();
            let expected: Vec<f32> = ((position + 1 - tail.len() as i32)..=position)
                .map(|p| p as f32)
                .collect();
            assert_eq!(tail, expected);
        }
        assert!(cache.start() > 0, "old positions were dropped");
    }
}
