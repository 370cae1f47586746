//! The keys and values of past positions, one cache per layer.
//!
//! As mlx-lm's `KVCache`: buffers grow in steps of 256 positions and new entries are written in
//! place, so a decoding step does not copy the whole cache. A cache for a sliding-window layer
//! (`with_window`) drops positions that no query can see any more, so its memory stays bounded
//! (mlx-lm's `RotatingKVCache` does the same with a ring buffer).

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::{Ellipsis, IndexOp, TryIndexMutOp};
use mlx_rs::Array;

use crate::error::Result;

const STEP: i32 = 256;

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
