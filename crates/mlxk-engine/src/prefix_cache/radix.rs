//! A radix tree of token sequences: each kept sequence is a path from the root whose edges hold
//! runs of tokens, so one walk along a prompt finds how far it agrees with every sequence kept.

use std::collections::{hash_map, HashMap};

/// What a sequence is known by outside the tree.
pub type Id = u64;

#[derive(Default)]
pub struct RadixTree {
    root: Node,
}

#[derive(Default)]
struct Node {
    /// The edges down, by the first token of their run.
    edges: HashMap<u32, Edge>,
    /// The sequence that ends here.
    id: Option<Id>,
}

struct Edge {
    /// Never empty; below the root, a node without a sequence has at least two edges, so runs
    /// are as long as they can be.
    run: Vec<u32>,
    to: Node,
}

impl RadixTree {
    /// Keeps `tokens` as `id` (it replaces a sequence of the same tokens).
    pub fn insert(&mut self, tokens: &[u32], id: Id) {
        let mut node = &mut self.root;
        let mut rest = tokens;
        while let Some(&first) = rest.first() {
            let edge = match node.edges.entry(first) {
                hash_map::Entry::Occupied(edge) => edge.into_mut(),
                hash_map::Entry::Vacant(place) => {
                    let leaf = Node {
                        edges: HashMap::new(),
                        id: Some(id),
                    };
                    place.insert(Edge {
                        run: rest.to_vec(),
                        to: leaf,
                    });
                    return;
                }
            };
            let common = common_prefix(&edge.run, rest);
            if common < edge.run.len() {
                // The sequence parts from this run midway: a node where they part.
                let tail = edge.run.split_off(common);
                let below = std::mem::take(&mut edge.to);
                edge.to.edges.insert(
                    tail[0],
                    Edge {
                        run: tail,
                        to: below,
                    },
                );
            }
            rest = &rest[common..];
            node = &mut edge.to;
        }
        node.id = Some(id);
    }

    /// Forgets the sequence `tokens` (nothing when it is not kept); returns its id.
    pub fn remove(&mut self, tokens: &[u32]) -> Option<Id> {
        remove_below(&mut self.root, tokens)
    }

    /// The sequences kept that `tokens` starts with (itself included), shortest first.
    pub fn prefixes_of(&self, tokens: &[u32]) -> Vec<Id> {
        let mut found = Vec::new();
        let mut node = &self.root;
        let mut rest = tokens;
        loop {
            found.extend(node.id);
            let Some(edge) = rest.first().and_then(|first| node.edges.get(first)) else {
                return found;
            };
            if !rest.starts_with(&edge.run) {
                return found;
            }
            rest = &rest[edge.run.len()..];
            node = &edge.to;
        }
    }

    /// Every sequence kept with the number of tokens it shares with the start of `prompt`,
    /// the most first: the ones below the point where the walk along the prompt stops, then,
    /// going back up, the ones that part from the prompt at each node passed.
    pub fn by_shared_prefix(&self, prompt: &[u32]) -> Vec<(usize, Id)> {
        // The nodes passed, each with its depth and the edge the walk took from it.
        let mut passed: Vec<(usize, &Node, u32)> = Vec::new();
        let mut node = &self.root;
        let mut depth = 0;
        let (deepest, shared) = loop {
            let Some(&first) = prompt.get(depth) else {
                break (node, depth);
            };
            let Some(edge) = node.edges.get(&first) else {
                break (node, depth);
            };
            passed.push((depth, node, first));
            let common = common_prefix(&edge.run, &prompt[depth..]);
            if common < edge.run.len() {
                break (&edge.to, depth + common);
            }
            node = &edge.to;
            depth += common;
        };
        let mut found = Vec::new();
        deepest.collect_ids(shared, &mut found);
        for (depth, node, taken) in passed.into_iter().rev() {
            found.extend(node.id.map(|id| (depth, id)));
            for (first, edge) in &node.edges {
                if *first != taken {
                    edge.to.collect_ids(depth, &mut found);
                }
            }
        }
        found
    }
}

impl Node {
    /// The ids of this subtree, each with `shared`.
    fn collect_ids(&self, shared: usize, into: &mut Vec<(usize, Id)>) {
        into.extend(self.id.map(|id| (shared, id)));
        for edge in self.edges.values() {
            edge.to.collect_ids(shared, into);
        }
    }
}

fn remove_below(node: &mut Node, rest: &[u32]) -> Option<Id> {
    let Some(&first) = rest.first() else {
        return node.id.take();
    };
    let edge = node.edges.get_mut(&first)?;
    if !rest.starts_with(&edge.run) {
        return None;
    }
    let removed = remove_below(&mut edge.to, &rest[edge.run.len()..]);
    // Keep the tree compact: a node left with no sequence and no edge goes, one with a single
    // edge is merged into the edge above it.
    if edge.to.id.is_none() {
        match edge.to.edges.len() {
            0 => {
                node.edges.remove(&first);
            }
            1 => {
                let (_, only) = edge.to.edges.drain().next().expect("one edge");
                edge.run.extend(only.run);
                edge.to = only.to;
            }
            _ => {}
        }
    }
    removed
}

pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut found: Vec<(usize, Id)>) -> Vec<(usize, Id)> {
        // Longest first, as found; equal lengths in id order for the comparison.
        found.sort_by_key(|&(shared, id)| (std::cmp::Reverse(shared), id));
        found
    }

    fn edge_count(node: &Node) -> usize {
        node.edges.len()
            + node
                .edges
                .values()
                .map(|e| edge_count(&e.to))
                .sum::<usize>()
    }

    #[test]
    fn a_walk_along_the_prompt_gives_each_sequence_its_shared_length_longest_first() {
        let mut tree = RadixTree::default();
        tree.insert(&[1, 2, 3, 4, 5], 1);
        tree.insert(&[1, 2, 3, 9], 2);
        tree.insert(&[1, 2], 3);
        tree.insert(&[7, 8], 4);
        tree.insert(&[1, 2, 3, 4, 5, 6, 7], 5);
        let found = tree.by_shared_prefix(&[1, 2, 3, 4, 5, 6, 0]);
        let lengths: Vec<usize> = found.iter().map(|&(n, _)| n).collect();
        assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "{found:?}");
        assert_eq!(
            sorted(found),
            [(6, 5), (5, 1), (3, 2), (2, 3), (0, 4)],
            "every sequence, with what it shares"
        );
        // A prompt ending inside a run, and one that is shorter than every sequence.
        assert_eq!(
            sorted(tree.by_shared_prefix(&[1, 2, 3])),
            [(3, 1), (3, 2), (3, 5), (2, 3), (0, 4)]
        );
        assert_eq!(sorted(tree.by_shared_prefix(&[])).len(), 5);
        assert_eq!(tree.prefixes_of(&[1, 2, 3, 4, 5, 6, 7, 8]), [3, 1, 5]);
        assert_eq!(tree.prefixes_of(&[1, 2, 3, 4]), [3]);
    }

    #[test]
    fn removing_keeps_the_tree_compact_and_the_same_tokens_replace_a_sequence() {
        let mut tree = RadixTree::default();
        tree.insert(&[1, 2, 3, 4], 1);
        tree.insert(&[1, 2, 5], 2);
        tree.insert(&[1, 2, 5], 3);
        assert_eq!(sorted(tree.by_shared_prefix(&[1, 2, 5])), [(3, 3), (2, 1)]);
        // [1, 2] then splits into [3, 4] and [5].
        assert_eq!(edge_count(&tree.root), 3);
        assert_eq!(tree.remove(&[1, 2, 6]), None, "not kept");
        assert_eq!(tree.remove(&[1, 2]), None, "only a shared run");
        assert_eq!(tree.remove(&[1, 2, 5]), Some(3));
        // [1, 2] and [3, 4] merged back into one run.
        assert_eq!(edge_count(&tree.root), 1);
        assert_eq!(tree.by_shared_prefix(&[1, 2, 3, 9]), [(3, 1)]);
        assert_eq!(tree.remove(&[1, 2, 3, 4]), Some(1));
        assert_eq!(edge_count(&tree.root), 0);
        assert!(tree.by_shared_prefix(&[1, 2]).is_empty());
    }
}
