//! Which files the Hub stores with Git LFS: the rule behind `preupload`'s `uploadMode`, also used
//! when a folder is seeded. A file is LFS when it is large (10 MiB or more), when its first bytes
//! look binary (a NUL byte), or when a `filter=lfs` pattern of the repo's `.gitattributes` (the
//! Hub's default one when the repo has none) matches its path.

pub const LFS_SIZE_THRESHOLD: u64 = 10 * 1024 * 1024;

/// The patterns of the `.gitattributes` the Hub writes into a new model repo.
pub const DEFAULT_LFS_PATTERNS: &[&str] = &[
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gguf",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lfs.*",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "saved_model/**/*",
    "*.tar.*",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
];

/// The `.gitattributes` content of a new repo.
pub fn default_gitattributes() -> String {
    DEFAULT_LFS_PATTERNS
        .iter()
        .map(|p| format!("{p} filter=lfs diff=lfs merge=lfs -text\n"))
        .collect()
}

/// `gitattributes`: the repo's `.gitattributes` at the revision, if it has one.
pub fn is_lfs(path: &str, size: u64, sample: &[u8], gitattributes: Option<&str>) -> bool {
    if size >= LFS_SIZE_THRESHOLD || sample.contains(&0) {
        return true;
    }
    match gitattributes {
        Some(text) => lfs_patterns(text).any(|p| glob_matches(p, path)),
        None => DEFAULT_LFS_PATTERNS.iter().any(|p| glob_matches(p, path)),
    }
}

fn lfs_patterns(gitattributes: &str) -> impl Iterator<Item = &str> {
    gitattributes.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        let pattern = words.next().filter(|p| !p.starts_with('#'))?;
        words.any(|w| w == "filter=lfs").then_some(pattern)
    })
}

/// `.gitignore` rules, simplified: the last matching pattern wins, `!` re-includes, a trailing
/// `/` is dropped.
pub fn is_ignored(path: &str, gitignore: &str) -> bool {
    let mut ignored = false;
    for line in gitignore.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let pattern = pattern.trim_end_matches('/');
        let in_folder = path
            .match_indices('/')
            .any(|(i, _)| glob_matches(pattern, &path[..i]));
        if glob_matches(pattern, path) || in_folder {
            ignored = !negated;
        }
    }
    ignored
}

/// gitattributes-style matching: a pattern without `/` matches the file name in any folder;
/// otherwise the whole path. `*` and `?` stay within a path segment, `**` crosses them.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    if pattern.contains('/') {
        matches_at(pattern.as_bytes(), path.as_bytes())
    } else {
        let name = path.rsplit('/').next().unwrap_or(path);
        matches_at(pattern.as_bytes(), name.as_bytes())
    }
}

fn matches_at(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            let rest = &pattern[2..];
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| matches_at(rest, &text[i..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            for i in 0..=text.len() {
                if matches_at(rest, &text[i..]) {
                    return true;
                }
                if text.get(i) == Some(&b'/') {
                    break;
                }
            }
            false
        }
        Some(b'?') => {
            text.first().is_some_and(|&c| c != b'/') && matches_at(&pattern[1..], &text[1..])
        }
        Some(&c) => text.first() == Some(&c) && matches_at(&pattern[1..], &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule() {
        assert!(is_lfs("model.safetensors", 10, b"{}", None));
        assert!(is_lfs("sub/weights.bin", 10, b"abc", None));
        assert!(is_lfs("data.tar.gz", 10, b"abc", None));
        assert!(is_lfs("saved_model/a/b.txt", 10, b"abc", None));
        assert!(is_lfs("notes.txt", 10, b"a\0b", None));
        assert!(is_lfs("big.txt", LFS_SIZE_THRESHOLD, b"abc", None));
        assert!(!is_lfs("config.json", 10, b"{}", None));
        assert!(!is_lfs("bin/config.json", 10, b"{}", None));
    }

    #[test]
    fn repo_gitattributes_replace_the_defaults() {
        let attrs = "*.json filter=lfs diff=lfs merge=lfs -text\n# *.txt filter=lfs\n";
        assert!(is_lfs("config.json", 10, b"{}", Some(attrs)));
        assert!(!is_lfs("model.safetensors", 10, b"{}", Some(attrs)));
    }

    #[test]
    fn gitignore() {
        let rules = "*.log\nbuild/\n!keep.log\n";
        assert!(is_ignored("a/b.log", rules));
        assert!(!is_ignored("keep.log", rules));
        assert!(is_ignored("build/x.txt", rules));
        assert!(!is_ignored("src/x.txt", rules));
    }
}
