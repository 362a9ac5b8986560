//! Which keys the near-cache keeps and for how long: `[cache]` and
//! `[[cache.policy]]` in proxy.toml.

use crate::glob;
use std::time::Duration;

/// One `[[cache.policy]]`: keys matching `pattern` are cached for `ttl`, or
/// not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub pattern: String,
    /// `None`: keys matching the pattern are never cached.
    pub ttl: Option<Duration>,
}

/// When a read's reply may enter the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// On the first miss.
    First,
    /// On a miss of a key read recently before: one-off reads pass through
    /// at pass-through cost.
    Second,
}

/// The cache settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bound on the total weight of entries (key and reply bytes plus each
    /// entry's bookkeeping: `KeyEntry::charge`).
    pub max_bytes: u64,
    /// TTL of keys that match no policy (`None`: such keys are not cached).
    pub default_ttl: Option<Duration>,
    /// First match wins.
    pub policies: Vec<Policy>,
    pub admission: Admission,
    /// With `admission = "second"`: how many distinct keys' first reads are
    /// remembered before the memory of them starts over (see
    /// [`super::doorkeeper`]).
    pub admission_window: usize,
    /// With failover's `serve_stale`: how long past its policy TTL an entry
    /// is kept (never past the key's TTL upstream) so failover can still
    /// serve it; `None`: entries go at their policy TTL.
    pub stale_for: Option<Duration>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            default_ttl: Some(Duration::from_secs(60)),
            policies: Vec::new(),
            admission: Admission::Second,
            admission_window: 16 * 1024,
            stale_for: None,
        }
    }
}

impl CacheConfig {
    /// How long `key` may be cached, `None` when it must not be.
    pub fn ttl_for(&self, key: &[u8]) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        match self.policies.iter().find(|p| glob::matches(p.pattern.as_bytes(), key)) {
            Some(policy) => policy.ttl,
            None => self.default_ttl,
        }
    }

    /// Key prefixes to ask Redis for invalidations of (`CLIENT TRACKING
    /// BCAST PREFIX`): every cached key starts with one of them. A single
    /// empty prefix means all keys.
    pub fn tracking_prefixes(&self) -> Vec<Vec<u8>> {
        if self.default_ttl.is_some() {
            return vec![Vec::new()];
        }
        let mut prefixes: Vec<Vec<u8>> = self
            .policies
            .iter()
            .filter(|p| p.ttl.is_some())
            .map(|p| glob::literal_prefix(p.pattern.as_bytes()).to_vec())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        // Redis refuses overlapping prefixes; a shorter one covers the rest.
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for p in prefixes {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        if kept.iter().any(Vec::is_empty) {
            return vec![Vec::new()];
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CacheConfig {
        CacheConfig {
            default_ttl: None,
            policies: vec![
                Policy { pattern: "ratelimit:*".into(), ttl: None },
                Policy { pattern: "secrets:*".into(), ttl: Some(Duration::from_secs(600)) },
                Policy { pattern: "secrets:org1:*".into(), ttl: Some(Duration::from_secs(60)) },
                Policy { pattern: "flow:*".into(), ttl: Some(Duration::from_secs(300)) },
            ],
            ..CacheConfig::default()
        }
    }

    #[test]
    fn first_matching_policy_wins() {
        let c = config();
        assert_eq!(c.ttl_for(b"secrets:org1:aws"), Some(Duration::from_secs(600)));
        assert_eq!(c.ttl_for(b"flow:1"), Some(Duration::from_secs(300)));
        assert_eq!(c.ttl_for(b"ratelimit:1:/x"), None);
        assert_eq!(c.ttl_for(b"other"), None);
        let c = CacheConfig { default_ttl: Some(Duration::from_secs(5)), ..config() };
        assert_eq!(c.ttl_for(b"other"), Some(Duration::from_secs(5)));
        assert_eq!(c.ttl_for(b"ratelimit:1"), None);
    }

    #[test]
    fn prefixes_cover_cached_keys_without_overlap() {
        assert_eq!(config().tracking_prefixes(), vec![b"flow:".to_vec(), b"secrets:".to_vec()]);
        assert_eq!(CacheConfig::default().tracking_prefixes(), vec![Vec::<u8>::new()]);
    }
}
