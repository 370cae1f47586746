//! Reading a buffer that keeps growing: markers that may be only partly there yet, and JSON
//! values whose end has not arrived.

/// The length of the longest end of `text` that begins one of `markers` without completing it:
/// the next piece may complete the marker, so this much is held back.
pub(super) fn partial_marker_len(text: &str, markers: &[&str]) -> usize {
    markers
        .iter()
        .flat_map(|marker| {
            marker
                .char_indices()
                .skip(1)
                .map(move |(len, _)| &marker[..len])
        })
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Whether `text` can still grow into `word`, or already begins with it.
pub(super) fn compatible_with(text: &str, word: &str) -> bool {
    text.starts_with(word) || word.starts_with(text)
}

/// The first of `markers` in `text` (the earliest; at one place, the first listed), searching
/// only where a match could begin that a search up to `searched` bytes would have missed: a
/// long call body is not searched again from its start at every piece.
pub(super) fn find_first<'m>(
    text: &str,
    markers: &[&'m str],
    searched: usize,
) -> Option<(usize, &'m str)> {
    let longest = markers.iter().map(|m| m.len()).max().unwrap_or(0);
    let mut from = searched.saturating_sub(longest).min(text.len());
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    markers
        .iter()
        .filter_map(|marker| text[from..].find(marker).map(|at| (from + at, *marker)))
        .min_by_key(|(at, _)| *at)
}

/// Follows a JSON object or array as it arrives, to tell where it ends: brackets counted
/// outside strings, each byte looked at once however long the value grows.
#[derive(Debug, Default)]
pub(super) struct JsonExtent {
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonExtent {
    /// `text` begins with the value's opening bracket and has only grown since the last call.
    /// Returns the value's length once its closing bracket is there. Whether it is valid JSON
    /// is for a JSON parser to say.
    pub(super) fn end(&mut self, text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        while self.scanned < bytes.len() {
            let byte = bytes[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(self.scanned);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_markers_are_held_whole_ones_are_not() {
        assert_eq!(partial_marker_len("text <tool", &["<tool_call>"]), 5);
        assert_eq!(partial_marker_len("text <tool_call>", &["<tool_call>"]), 0);
        assert_eq!(partial_marker_len("a<|", &["<|end|>", "<|call|>"]), 2);
        assert_eq!(partial_marker_len("a <b", &["<tool_call>"]), 0);
        assert_eq!(partial_marker_len("é", &["éa"]), 2);
    }

    #[test]
    fn markers_are_found_again_across_the_searched_edge() {
        let text = "abc </tool_call>";
        assert_eq!(
            find_first(text, &["</tool_call>"], 7),
            Some((4, "</tool_call>"))
        );
        assert_eq!(
            find_first(text, &["</tool_call>"], 0),
            Some((4, "</tool_call>"))
        );
        let text = "ééé<|end|>x<|call|>";
        assert_eq!(
            find_first(text, &["<|call|>", "<|end|>"], 5),
            Some((6, "<|end|>"))
        );
        assert_eq!(find_first("abc", &["<|end|>"], 3), None);
    }

    #[test]
    fn a_json_value_ends_at_its_own_closing_bracket() {
        let text = r#"{"a": "}]\"{", "b": [1, {"c": 2}]} tail"#;
        let mut extent = JsonExtent::default();
        let mut found = None;
        for end in 1..=text.len() {
            if let Some(len) = extent.end(&text[..end]) {
                found = Some(len);
                break;
            }
        }
        assert_eq!(found, Some(text.len() - " tail".len()));
        let mut extent = JsonExtent::default();
        assert_eq!(extent.end(r#"[{"a": "\\"}, "#), None);
        assert_eq!(extent.end(r#"[{"a": "\\"}, 2] x"#), Some(16));
    }
}
