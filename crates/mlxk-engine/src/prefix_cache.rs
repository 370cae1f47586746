//! Keys and values of earlier prompts, reused by later ones that start the same way: a chat or
//! agent client resends the whole conversation every turn, and without this each turn
//! prefills all of it again.
//!
//! Entries are token sequences with the caches that computed them, kept in a radix tree of
//! their tokens (`radix`) so that a prompt finds the longest kept prefix in one walk, and evicted
//! least recently used under a byte budget. Reuse is exact: the
//! positions kept are those the same tokens produced, and a cache that cannot be cut exactly
//! (a sliding window that dropped what the next token sees) is not reused.

mod radix;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::kv_cache::KvCache;
use radix::{Id, RadixTree};

/// What the cache did, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prompts that started from kept caches.
    pub hits: u64,
    /// Prompts that found nothing to reuse.
    pub misses: u64,
    /// Prompt tokens not computed again.
    pub reused_tokens: u64,
    /// Memory the kept caches hold now.
    pub bytes: usize,
}

struct Entry {
    tokens: Vec<u32>,
    caches: Vec<KvCache>,
    bytes: usize,
    last_used: u64,
}

/// Shared by a model's generations on one thread: a generation takes from it when it starts
/// and gives its caches back when it ends.
pub type SharedPrefixCache = Rc<RefCell<PrefixCache>>;

pub struct PrefixCache {
    entries: HashMap<Id, Entry>,
    /// The entries' tokens, for the lookups.
    tree: RadixTree,
    next_id: Id,
    capacity: usize,
    clock: u64,
    stats: PrefixStats,
}

/// The default budget: an eighth of physical memory, at most 4 GiB (the caches of a few long
/// conversations of a small model, or one of a large model).
pub fn default_capacity() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    (system.total_memory() / 8).min(4 << 30)
}

/// A reuse shorter than this saves less than the lookup and the copy cost.
const MIN_REUSE: usize = 16;

impl PrefixCache {
    /// A cache holding at most `capacity` bytes of keys and values.
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            entries: HashMap::new(),
            tree: RadixTree::default(),
            next_id: 0,
            capacity,
            clock: 0,
            stats: PrefixStats::default(),
        }
    }

    pub fn shared(capacity: usize) -> SharedPrefixCache {
        Rc::new(RefCell::new(PrefixCache::new(capacity)))
    }

    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    /// Caches holding the longest kept prefix of `prompt`, cut to it, and its length. Never the
    /// whole prompt: its last token is computed again, for the logits of the first new token.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<(Vec<KvCache>, usize)> {
        let limit = prompt.len().saturating_sub(1);
        // Longest first; an entry whose caches cannot be cut there (a window that dropped what
        // the prompt needs) gives way to a shorter one.
        let candidates = self.tree.by_shared_prefix(prompt);
        for (shared, id) in candidates {
            let length = shared.min(limit);
            if length < MIN_REUSE {
                break;
            }
            let entry = self
                .entries
                .get_mut(&id)
                .expect("the tree holds kept entries");
            let mut caches = entry.caches.clone();
            if caches.iter_mut().all(|c| c.truncate(length as i32)) {
                self.clock += 1;
                entry.last_used = self.clock;
                self.stats.hits += 1;
                self.stats.reused_tokens += length as u64;
                return Some((caches, length));
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Keeps `caches`, which hold the keys and values of `tokens`. An entry this one extends
    /// (the same conversation, a turn later) is replaced; the least recently used go until the
    /// budget holds.
    pub fn store(&mut self, tokens: Vec<u32>, caches: Vec<KvCache>) {
        let bytes: usize = caches.iter().map(KvCache::bytes).sum();
        if tokens.len() < MIN_REUSE || bytes > self.capacity {
            return;
        }
        for extended in self.tree.prefixes_of(&tokens) {
            self.forget(extended);
        }
        self.clock += 1;
        self.next_id += 1;
        self.tree.insert(&tokens, self.next_id);
        let entry = Entry {
            tokens,
            caches,
            bytes,
            last_used: self.clock,
        };
        self.entries.insert(self.next_id, entry);
        while self.entries.values().map(|e| e.bytes).sum::<usize>() > self.capacity {
            let oldest = *self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .expect("over budget means not empty")
                .0;
            self.forget(oldest);
        }
        self.stats.bytes = self.entries.values().map(|e| e.bytes).sum();
    }

    fn forget(&mut self, id: Id) {
        if let Some(entry) = self.entries.remove(&id) {
            self.tree.remove(&entry.tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use mlx_rs::Array;

    use super::*;

    /// One layer's cache holding `n` positions, each holding its own position as its value.
    fn caches(n: i32) -> Vec<KvCache> {
        let mut cache = KvCache::default();
        for p in 0..n {
            let entry = Array::from_slice(&[p as f32], &[1, 1, 1, 1]);
            cache.update(entry.clone(), entry).unwrap();
        }
        vec![cache]
    }

    #[test]
    fn the_longest_prefix_is_reused_and_never_the_whole_prompt() {
        let mut cache = PrefixCache::new(1 << 30);
        let first: Vec<u32> = (0..40).collect();
        cache.store(first.clone(), caches(40));
        let mut longer = first.clone();
        longer.extend([100, 101]);
        let (reused, n) = cache.lookup(&longer).unwrap();
        assert_eq!((n, reused[0].offset()), (40, 40));
        // The same prompt again: all but its last token.
        let (_, n) = cache.lookup(&first).unwrap();
        assert_eq!(n, 39);
        // A prompt that parts early: too little to reuse.
        let other: Vec<u32> = (0..10).chain(500..540).collect();
        assert!(cache.lookup(&other).is_none());
        assert_eq!(
            (
                cache.stats().hits,
                cache.stats().misses,
                cache.stats().reused_tokens
            ),
            (2, 1, 79)
        );
    }

    #[test]
    fn a_longer_turn_replaces_its_conversation_and_the_budget_evicts_the_oldest() {
        let one = caches(20);
        let bytes: usize = one.iter().map(KvCache::bytes).sum();
        let mut cache = PrefixCache::new(2 * bytes);
        cache.store((0..20).collect(), one);
        cache.store((0..20).collect(), caches(20));
        assert_eq!(
            cache.entries.len(),
            1,
            "the same tokens again replace the entry"
        );
        cache.store((1000..1020).collect(), caches(20));
        let _ = cache.lookup(&(0..30).collect::<Vec<u32>>());
        cache.store((2000..2020).collect(), caches(20));
        let mut kept: Vec<u32> = cache.entries.values().map(|e| e.tokens[0]).collect();
        kept.sort();
        assert_eq!(kept, [0, 2000], "the least recently used went");
        assert_eq!(cache.stats().bytes, 2 * bytes);
    }
}
