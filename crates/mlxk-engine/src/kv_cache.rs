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
use mlx_rs::ops::indexing::{Ellipsis, IndexOp, TryIndexMutOp};
use mlx_rs::ops::{concatenate, zeros_dtype};
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

impl RowOffsets {
    /// The offsets of a forward pass over `caches` (one per layer, all at the same positions):
    /// the first layer's, taken before it is written.
    pub fn of(caches: &[KvCache]) -> RowOffsets {
        caches
            .first()
            .map_or(RowOffsets::One(0), KvCache::row_offsets)
    }
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
    /// Booleans, `true` where a query may look: `[L, T]` for one row, `[rows, 1, L, T]` for
    /// several.
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

/// Keys and values of one or more sequences, `[rows, kv_heads, slots, head_dim]`, right-aligned:
/// the newest position of every row is in slot `len - 1`, so one decoding step writes one
/// column for all of them, and a row shorter than the longest is padded on the left. A clone
/// shares the buffers until one of them is written (MLX arrays are values), so a kept cache can
/// seed any number of later generations.
///
/// Row `r`'s slot `j` in `first[r]..len` holds position `offsets[r] - (len - j)`.
#[derive(Clone)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Slots in use, the same for every row.
    len: i32,
    /// Per row: positions seen so far, the RoPE offset of its next token.
    offsets: Vec<i32>,
    /// Per row: the first slot holding one of its positions (the slots before it are padding).
    first: Vec<i32>,
    window: Option<i32>,
}

/// One empty row: the cache of one generation.
impl Default for KvCache {
    fn default() -> Self {
        KvCache {
            keys: None,
            values: None,
            len: 0,
            offsets: vec![0],
            first: vec![0],
            window: None,
        }
    }
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

    /// A batch with no rows yet: sequences join it with [`KvCache::append_row`].
    pub fn batch(window: Option<i32>) -> Self {
        KvCache {
            offsets: Vec::new(),
            first: Vec::new(),
            window,
            ..KvCache::default()
        }
    }

    /// How many sequences it holds.
    pub fn rows(&self) -> usize {
        self.offsets.len()
    }

    /// Positions seen so far by its one sequence: the RoPE offset of the next token.
    pub fn offset(&self) -> i32 {
        debug_assert_eq!(self.rows(), 1, "offset() of a batch");
        self.offsets[0]
    }

    /// Absolute position of the first key that [`KvCache::update`] returns (one sequence).
    pub fn start(&self) -> i32 {
        debug_assert_eq!(self.rows(), 1, "start() of a batch");
        self.offsets[0] - self.len
    }

    /// Writes new keys and values `[rows, kv_heads, L, head_dim]` at the end of every row and
    /// returns every slot in use.
    pub fn update(&mut self, keys: Array, values: Array) -> Result<(Array, Array)> {
        let added = keys.shape()[2];
        let capacity = self.keys.as_ref().map_or(0, |k| k.shape()[2]);
        if self.len + added > capacity {
            // Grow, dropping what a window no longer needs: the last `window - 1` old positions
            // are all the first new query can see. Rows are right-aligned, so one cut serves
            // them all.
            let keep_from = match self.window {
                Some(w) => (self.len - (w - 1)).max(0),
                None => 0,
            };
            let stored = self.len;
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
            self.len -= keep_from;
            for first in &mut self.first {
                *first = (*first - keep_from).max(0);
            }
        }
        let at = self.len;
        self.len += added;
        for offset in &mut self.offsets {
            *offset += added;
        }
        let end = self.len;
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
        match self.offsets[..] {
            [offset] => RowOffsets::One(offset),
            _ => RowOffsets::PerRow(Array::from_slice(
                &self.offsets,
                &[self.offsets.len() as i32],
            )),
        }
    }

    /// Writes new keys and values `[rows, kv_heads, L, head_dim]` and returns what the `L` new
    /// queries of each row attend to: that row's stored keys under a causal mask, or, for a
    /// sliding window, only the keys inside it.
    pub fn update_and_attend(&mut self, keys: Array, values: Array) -> Result<Attend> {
        if self.rows() == 1 {
            self.update_and_attend_one(keys, values)
        } else {
            self.update_and_attend_rows(keys, values)
        }
    }

    /// One sequence: no padding, so no mask while decoding, and the causal mode of the fused
    /// attention while prefilling (what the engine did before batches, to the bit).
    fn update_and_attend_one(&mut self, keys: Array, values: Array) -> Result<Attend> {
        let length = keys.shape()[2];
        let offset = self.offset();
        let (mut keys, mut values) = self.update(keys, values)?;
        let (key_start, total) = (self.start(), offset + length);
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

    /// Several rows, in slot space: a row sees its own slots (from `first[r]`) up to each
    /// query's, and within its window. The mask `[rows, 1, L, T]` is built on the device from
    /// two small uploads, without a host loop.
    fn update_and_attend_rows(&mut self, keys: Array, values: Array) -> Result<Attend> {
        let length = keys.shape()[2];
        let (mut keys, mut values) = self.update(keys, values)?;
        let len = self.len;
        let view = match self.window {
            Some(w) if length == 1 && len > w => len - w,
            _ => 0,
        };
        if view > 0 {
            keys = keys.index((Ellipsis, view..len, ..));
            values = values.index((Ellipsis, view..len, ..));
        }
        if length == 1 && self.first.iter().all(|&f| f <= view) {
            return Ok(Attend {
                keys,
                values,
                mask: AttentionMask::None,
            });
        }
        let rows = self.rows() as i32;
        let key = Array::arange::<_, i32>(view, len, None)?.reshape(&[1, 1, 1, len - view])?;
        let query =
            Array::arange::<_, i32>(len - length, len, None)?.reshape(&[1, 1, length, 1])?;
        let first = Array::from_slice(&self.first, &[rows, 1, 1, 1]);
        let mut mask = key.ge(&first)?.logical_and(&key.le(&query)?)?;
        if let Some(w) = self.window {
            mask = mask.logical_and(&key.gt(&query.subtract(Array::from_int(w))?)?)?;
        }
        Ok(Attend {
            keys,
            values,
            mask: AttentionMask::Array(mask),
        })
    }

    /// Adds a one-row cache (a sequence that finished its prefill) as the last row. The shorter
    /// side is padded on the left so that every row still ends at the last slot; the whole
    /// batch is copied once, into a fresh buffer with room to grow.
    pub fn append_row(&mut self, row: KvCache) -> Result<()> {
        assert_eq!(row.rows(), 1, "append_row takes one sequence");
        assert_eq!(row.window, self.window, "append_row across window sizes");
        if self.rows() == 0 {
            *self = row;
            return Ok(());
        }
        let (a, b) = (self.len, row.len - row.first[0]);
        let n = a.max(b);
        let capacity = room_for(n);
        let (rows, row_from, row_to) = (self.rows() as i32, row.first[0], row.len);
        let join = |mine: Option<&Array>, theirs: Option<&Array>| -> Result<Option<Array>> {
            let Some(like) = mine.or(theirs) else {
                return Ok(None);
            };
            let place = |buffer: Option<&Array>, rows: i32, from: i32, to: i32| match buffer {
                Some(buffer) => placed(buffer, from, to, n - (to - from), capacity),
                None => zeros_like_rows(like, rows, capacity),
            };
            let parts = [
                place(mine, rows, 0, a)?,
                place(theirs, 1, row_from, row_to)?,
            ];
            Ok(Some(concatenate(&parts, 0)?))
        };
        self.keys = join(self.keys.as_ref(), row.keys.as_ref())?;
        self.values = join(self.values.as_ref(), row.values.as_ref())?;
        for first in &mut self.first {
            *first += n - a;
        }
        self.first.push(n - b);
        self.offsets.push(row.offsets[0]);
        self.len = n;
        Ok(())
    }

    /// Keeps the rows `keep` (in that order) and trims the padding they all share, into a fresh
    /// buffer; no rows left drops the buffers.
    pub fn filter_rows(&mut self, keep: &[usize]) -> Result<()> {
        self.offsets = keep.iter().map(|&r| self.offsets[r]).collect();
        self.first = keep.iter().map(|&r| self.first[r]).collect();
        let Some(&shared) = self.first.iter().min() else {
            *self = KvCache::batch(self.window);
            return Ok(());
        };
        let len = self.len;
        let capacity = room_for(len - shared);
        let rows: Vec<i32> = keep.iter().map(|&r| r as i32).collect();
        let rows = Array::from_slice(&rows, &[rows.len() as i32]);
        let trim = |buffer: Option<Array>| -> Result<Option<Array>> {
            buffer
                .map(|b| placed(&b.take_axis(&rows, 0)?, shared, len, 0, capacity))
                .transpose()
        };
        self.keys = trim(self.keys.take())?;
        self.values = trim(self.values.take())?;
        for first in &mut self.first {
            *first -= shared;
        }
        self.len -= shared;
        Ok(())
    }

    /// Row `r` as a one-row cache, in a fresh buffer (a view would keep the whole batch's
    /// buffer alive): what the prefix cache keeps of a sequence that leaves the batch.
    pub fn extract_row(&self, r: usize) -> Result<KvCache> {
        self.row_without_last(r, 0)
    }

    /// Every row as a one-row cache of its own, in fresh buffers, leaving out the last
    /// `padding[r]` slots of row `r`: the keys of the padding after a shorter prompt in a pass
    /// that prefilled several (its tokens never attend to them).
    pub fn split_rows(&self, padding: &[i32]) -> Result<Vec<KvCache>> {
        assert_eq!(
            padding.len(),
            self.rows(),
            "split_rows takes a padding per row"
        );
        (0..self.rows())
            .map(|r| self.row_without_last(r, padding[r]))
            .collect()
    }

    /// Row `r` but its last `padding` slots, in a fresh buffer.
    fn row_without_last(&self, r: usize, padding: i32) -> Result<KvCache> {
        let (from, to) = (self.first[r], self.len - padding);
        let capacity = room_for(to - from);
        let row = r as i32;
        let copy = |buffer: &Option<Array>| -> Result<Option<Array>> {
            buffer
                .as_ref()
                .map(|b| placed(&b.index((row..row + 1, Ellipsis)), from, to, 0, capacity))
                .transpose()
        };
        Ok(KvCache {
            keys: copy(&self.keys)?,
            values: copy(&self.values)?,
            len: to - from,
            offsets: vec![self.offsets[r] - padding],
            first: vec![0],
            window: self.window,
        })
    }

    /// Forgets every position from `positions` on, so that the next update continues from
    /// there. `false` (and unchanged) when that cannot be exact: a window already dropped
    /// positions the next query would see.
    pub fn truncate(&mut self, positions: i32) -> bool {
        debug_assert_eq!(self.rows(), 1, "truncate() of a batch");
        let (offset, start) = (self.offset(), self.start());
        if positions > offset || positions < 0 {
            return false;
        }
        let exact = match self.window {
            Some(w) => start == 0 || positions - (w - 1) >= start,
            None => true,
        };
        if exact {
            self.offsets[0] = positions;
            self.len = positions - start;
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

/// Slots for `used` positions and room to grow (at least one free slot, up to a whole step),
/// so that a rebuilt buffer is always a fresh copy.
fn room_for(used: i32) -> i32 {
    (used / STEP + 1) * STEP
}

/// Slots `from..to` of `buffer`, moved to slot `at` of a fresh buffer of `capacity` slots
/// (zeros elsewhere).
fn placed(buffer: &Array, from: i32, to: i32, at: i32, capacity: i32) -> Result<Array> {
    let rows = buffer.shape()[0];
    let mut parts = Vec::with_capacity(3);
    if at > 0 {
        parts.push(zeros_like_rows(buffer, rows, at)?);
    }
    parts.push(buffer.index((Ellipsis, from..to, ..)));
    let after = capacity - at - (to - from);
    if after > 0 {
        parts.push(zeros_like_rows(buffer, rows, after)?);
    }
    Ok(concatenate(&parts, 2)?)
}

/// Zeros `[rows, kv_heads, slots, head_dim]` of `like`'s heads, head size and type.
fn zeros_like_rows(like: &Array, rows: i32, slots: i32) -> Result<Array> {
    let shape = like.shape();
    Ok(zeros_dtype(
        &[rows, shape[1], slots, shape[3]],
        like.dtype(),
    )?)
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

    /// Entries `[rows, 1, 1, 1]` holding the position each row writes.
    fn entry(positions: &[i32]) -> Array {
        let values: Vec<f32> = positions.iter().map(|&p| p as f32).collect();
        Array::from_slice(&values, &[positions.len() as i32, 1, 1, 1])
    }

    /// One sequence that saw `positions`.
    fn fed(positions: std::ops::Range<i32>, window: Option<i32>) -> KvCache {
        let mut cache = window.map_or_else(KvCache::default, KvCache::with_window);
        for p in positions {
            cache.update(entry(&[p]), entry(&[p])).unwrap();
        }
        cache
    }

    fn floats(a: &Array) -> Vec<f32> {
        a.reshape(&[-1]).unwrap().as_slice::<f32>().to_vec()
    }

    /// The positions a one-row cache stores, keys and values.
    fn stored(cache: &KvCache) -> (Vec<f32>, Vec<f32>) {
        assert_eq!(cache.rows(), 1);
        let used = |b: &Option<Array>| {
            b.as_ref().map_or(Vec::new(), |b| {
                floats(&b.index((Ellipsis, cache.first[0]..cache.len, ..)))
            })
        };
        (used(&cache.keys), used(&cache.values))
    }

    fn batch_of(rows: Vec<KvCache>) -> KvCache {
        let mut batch = KvCache::batch(rows[0].window);
        for row in rows {
            batch.append_row(row).unwrap();
        }
        batch
    }

    /// The keys query `query` of row `row` sees in a several-row `attend`.
    fn visible(attend: &Attend, row: usize, query: usize) -> Vec<f32> {
        let slots = attend.keys.shape()[2] as usize;
        let keys = floats(&attend.keys)[row * slots..(row + 1) * slots].to_vec();
        match &attend.mask {
            AttentionMask::None => keys,
            AttentionMask::Array(mask) => {
                let shape = mask.shape();
                assert_eq!(shape[0] as usize, attend.keys.shape()[0] as usize);
                assert_eq!(shape[3] as usize, slots);
                let queries = shape[2] as usize;
                let mask = mask.reshape(&[-1]).unwrap();
                let at = (row * queries + query) * slots;
                let allowed = &mask.as_slice::<bool>()[at..at + slots];
                keys.iter()
                    .zip(allowed)
                    .filter(|(_, &a)| a)
                    .map(|(&k, _)| k)
                    .collect()
            }
            AttentionMask::Causal => panic!("several rows need a mask array"),
        }
    }

    fn positions(range: std::ops::RangeInclusive<i32>) -> Vec<f32> {
        range.map(|p| p as f32).collect()
    }

    /// Three prompts prefilled in one pass, each chunk padded on the right to the longest
    /// (`-1` here): no real query sees a padding key, and split apart each row holds exactly
    /// its positions and goes on as a cache of its own.
    #[test]
    fn chunks_padded_on_the_right_are_cut_off_when_the_rows_split() {
        let rows = vec![fed(0..3, None), fed(0..6, None), KvCache::default()];
        let mut batch = batch_of(rows);
        let chunks = [[3., 4., -1.], [6., 7., 8.], [0., -1., -1.]];
        let flat: Vec<f32> = chunks.concat();
        let new = Array::from_slice(&flat, &[3, 1, 3, 1]);
        let attend = batch.update_and_attend(new.clone(), new).unwrap();
        assert_eq!(visible(&attend, 0, 1), positions(0..=4));
        assert_eq!(visible(&attend, 1, 2), positions(0..=8));
        assert_eq!(visible(&attend, 2, 0), positions(0..=0));
        let split = batch.split_rows(&[1, 0, 2]).unwrap();
        let expected = [0..=4, 0..=8, 0..=0];
        for (mut row, expected) in split.into_iter().zip(expected) {
            let end = *expected.end();
            assert_eq!(
                stored(&row),
                (positions(expected.clone()), positions(expected))
            );
            assert_eq!(row.offset(), end + 1);
            row.update(entry(&[end + 1]), entry(&[end + 1])).unwrap();
            assert_eq!(stored(&row).0, positions(0..=end + 1));
        }
    }

    #[test]
    fn appended_rows_decode_as_each_sequence_alone() {
        let mut batch = batch_of(vec![fed(0..3, None), fed(0..7, None)]);
        let mut alone = [fed(0..3, None), fed(0..7, None)];
        for step in 0..5 {
            let next = [3 + step, 7 + step];
            batch.update(entry(&next), entry(&next)).unwrap();
            for (cache, p) in alone.iter_mut().zip(next) {
                cache.update(entry(&[p]), entry(&[p])).unwrap();
            }
        }
        assert_eq!(batch.offsets, [8, 12]);
        for (r, alone) in alone.iter().enumerate() {
            let row = batch.extract_row(r).unwrap();
            assert_eq!(stored(&row), stored(alone), "row {r}");
            assert_eq!((row.offset(), row.start()), (alone.offset(), alone.start()));
            let buffer = row.keys.as_ref().unwrap();
            assert_eq!(buffer.shape()[0], 1, "a buffer of its own");
            assert!(buffer.shape()[2] > row.len, "with room to grow");
        }
    }

    #[test]
    fn the_decode_mask_after_append_row_hides_exactly_the_padding() {
        let mut batch = batch_of(vec![fed(0..3, None), fed(0..7, None)]);
        let attend = batch
            .update_and_attend(entry(&[3, 7]), entry(&[3, 7]))
            .unwrap();
        let AttentionMask::Array(mask) = &attend.mask else {
            panic!("padding needs a mask");
        };
        assert_eq!(mask.shape(), [2, 1, 1, 8]);
        let mask = mask.reshape(&[-1]).unwrap();
        let padding_hidden = [[false; 4], [true; 4]].concat();
        assert_eq!(mask.as_slice::<bool>()[..8], padding_hidden);
        assert_eq!(mask.as_slice::<bool>()[8..], [true; 8]);
        assert_eq!(visible(&attend, 0, 0), positions(0..=3));
        assert_eq!(visible(&attend, 1, 0), positions(0..=7));

        // A chunk of two queries per row: causal within each row, padding still hidden.
        let next = |p: i32, q: i32| {
            Array::from_slice(
                &[p as f32, (p + 1) as f32, q as f32, (q + 1) as f32],
                &[2, 1, 2, 1],
            )
        };
        let attend = batch.update_and_attend(next(4, 8), next(4, 8)).unwrap();
        assert_eq!(visible(&attend, 0, 0), positions(0..=4));
        assert_eq!(visible(&attend, 0, 1), positions(0..=5));
        assert_eq!(visible(&attend, 1, 0), positions(0..=8));
        assert_eq!(visible(&attend, 1, 1), positions(0..=9));

        // Rows of one length have no padding: no mask while decoding.
        let mut even = batch_of(vec![fed(0..5, None), fed(0..5, None)]);
        let attend = even
            .update_and_attend(entry(&[5, 5]), entry(&[5, 5]))
            .unwrap();
        assert!(matches!(attend.mask, AttentionMask::None));
    }

    #[test]
    fn filter_rows_drops_the_long_row_and_trims_the_padding() {
        let mut batch = batch_of(vec![fed(0..3, None), fed(0..7, None)]);
        for step in 0..5 {
            let next = [3 + step, 7 + step];
            batch.update(entry(&next), entry(&next)).unwrap();
        }
        assert_eq!((batch.len, batch.first.clone()), (12, vec![4, 0]));
        let bytes = batch.bytes();
        batch.filter_rows(&[0]).unwrap();
        assert_eq!(
            (batch.rows(), batch.len, batch.first.clone()),
            (1, 8, vec![0])
        );
        assert_eq!(batch.offset(), 8);
        assert_eq!(stored(&batch), stored(&fed(0..8, None)));
        assert!(batch.bytes() < bytes, "the long row's slots are freed");
        batch.update(entry(&[8]), entry(&[8])).unwrap();
        assert_eq!(stored(&batch), stored(&fed(0..9, None)));

        batch.filter_rows(&[]).unwrap();
        assert_eq!((batch.rows(), batch.bytes()), (0, 0));
    }

    #[test]
    fn a_windowed_batch_stays_bounded_and_each_row_sees_its_last_positions() {
        let window = 4;
        let mut batch = batch_of(vec![fed(0..3, Some(window)), fed(0..600, Some(window))]);
        let mut next = [3, 600];
        for _ in 0..600 {
            let attend = batch.update_and_attend(entry(&next), entry(&next)).unwrap();
            let capacity = batch.keys.as_ref().unwrap().shape()[2];
            assert!(
                capacity <= window - 1 + 2 * STEP,
                "bounded: {capacity} slots"
            );
            assert_eq!(
                attend.keys.shape()[2],
                window.min(batch.len),
                "the window's view"
            );
            for (r, &p) in next.iter().enumerate() {
                let seen = visible(&attend, r, 0);
                assert_eq!(
                    seen,
                    positions((p + 1 - window).max(0)..=p),
                    "row {r} at {p}"
                );
            }
            next = next.map(|p| p + 1);
        }
        // A chunk of three queries per row: each sees its own last `window` positions.
        let chunk: Vec<f32> = next
            .iter()
            .flat_map(|&p| (p..p + 3).map(|q| q as f32))
            .collect();
        let chunk = Array::from_slice(&chunk, &[2, 1, 3, 1]);
        let attend = batch.update_and_attend(chunk.clone(), chunk).unwrap();
        for (r, &p) in next.iter().enumerate() {
            for i in 0..3 {
                let q = p + i as i32;
                assert_eq!(visible(&attend, r, i), positions(q + 1 - window..=q));
            }
        }
    }

    #[test]
    fn an_extracted_windowed_row_truncates_as_a_cache_of_its_own() {
        let window = 4;
        let mut batch = batch_of(vec![fed(0..3, Some(window)), fed(0..600, Some(window))]);
        for step in 0..10 {
            let next = [3 + step, 600 + step];
            batch.update(entry(&next), entry(&next)).unwrap();
        }
        let mut row = batch.extract_row(1).unwrap();
        let mut alone = fed(0..610, Some(window));
        assert_eq!(row.offset(), 610);
        assert!(row.start() > 0, "the window dropped old positions");
        for cache in [&mut row, &mut alone] {
            assert!(cache.truncate(609), "the window still holds what 609 sees");
            assert!(
                !cache.truncate(cache.start()),
                "dropped positions cannot come back"
            );
            cache.update(entry(&[1000]), entry(&[1000])).unwrap();
        }
        let tail = |cache: &KvCache| {
            stored(cache)
                .0
                .iter()
                .rev()
                .take(4)
                .rev()
                .copied()
                .collect::<Vec<f32>>()
        };
        assert_eq!(tail(&row), [606.0, 607.0, 608.0, 1000.0]);
        assert_eq!(tail(&row), tail(&alone));

        let short = batch.extract_row(0).unwrap();
        assert_eq!((short.offset(), short.start()), (13, 0));
        assert_eq!(stored(&short), stored(&fed(0..13, Some(window))));
    }

    #[test]
    fn row_offsets_are_a_scalar_for_one_row_and_an_array_for_several() {
        assert!(matches!(
            KvCache::default().row_offsets(),
            RowOffsets::One(0)
        ));
        assert!(matches!(fed(0..3, None).row_offsets(), RowOffsets::One(3)));
        let mut batch = batch_of(vec![fed(0..3, None), fed(0..7, None)]);
        let RowOffsets::PerRow(offsets) = batch.row_offsets() else {
            panic!("two rows have two offsets");
        };
        assert_eq!(offsets.dtype(), mlx_rs::Dtype::Int32);
        assert_eq!(offsets.as_slice::<i32>(), [3, 7]);
        batch.filter_rows(&[1]).unwrap();
        assert!(matches!(batch.row_offsets(), RowOffsets::One(7)));
    }
}
