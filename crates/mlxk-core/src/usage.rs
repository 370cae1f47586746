//! When each model was last used (loaded by `mlxk run` or the server), for the Library's "last
//! used" column. Kept in `.mlxk-last-used.json` beside the cache folder (in `HF_HOME` by
//! default), not inside it: tools that scan the cache see nothing new. A missing or damaged
//! file reads as "never used"; writes are atomic (last writer wins).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::cache::HubCache;

pub struct UsageLog {
    path: PathBuf,
}

impl UsageLog {
    pub fn for_cache(cache: &HubCache) -> UsageLog {
        let root = cache.root();
        let dir = root.parent().unwrap_or(root);
        UsageLog {
            path: dir.join(".mlxk-last-used.json"),
        }
    }

    /// Model name -> when it was last used.
    pub fn read(&self) -> BTreeMap<String, DateTime<Utc>> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn record(&self, model: &str) -> std::io::Result<()> {
        self.record_at(model, Utc::now())
    }

    pub fn record_at(&self, model: &str, when: DateTime<Utc>) -> std::io::Result<()> {
        let mut used = self.read();
        used.insert(model.to_string(), when);
        let text = serde_json::to_vec_pretty(&used).map_err(std::io::Error::other)?;
        let temp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temp, text)?;
        std::fs::rename(&temp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_beside_the_cache_and_survives_a_damaged_file() {
        let home = tempfile::tempdir().unwrap();
        let cache = HubCache::at(home.path().join("hub"));
        let log = UsageLog::for_cache(&cache);
        assert!(log.read().is_empty());
        let when = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        log.record_at("org/a", when).unwrap();
        log.record("org/b").unwrap();
        let used = log.read();
        assert_eq!(used.get("org/a"), Some(&when));
        assert!(used["org/b"] > when);
        assert!(home.path().join(".mlxk-last-used.json").is_file());
        assert!(
            !home.path().join("hub").exists(),
            "nothing inside the cache"
        );

        std::fs::write(home.path().join(".mlxk-last-used.json"), "{not json").unwrap();
        assert!(log.read().is_empty());
        log.record_at("org/a", when).unwrap();
        assert_eq!(log.read().len(), 1);
    }
}
