//! What rules remember between messages, kept in Rust so it is bounded and can be reset per rule:
//! `herald.seen` keys and `herald.rate` buckets, and the one clock every time function reads (which
//! `herald rules test` sets per case).

use std::num::NonZeroUsize;
use std::time::Duration;

use jiff::Timestamp;
use lru::LruCache;

/// Keys remembered per rule, for each of `seen` and `rate`; the least recently used go first.
pub const KEYS_PER_RULE: usize = 10_000;

/// The time as rules see it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Clock {
    fixed: Option<Timestamp>,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        self.fixed.unwrap_or_else(Timestamp::now)
    }

    /// Pins the clock (tests, `rules run --time`); `None` follows the system clock again.
    pub fn set(&mut self, at: Option<Timestamp>) {
        self.fixed = at;
    }
}

/// One rule's memory.
pub struct RuleState {
    seen: LruCache<String, Timestamp>,
    rate: LruCache<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl Default for RuleState {
    fn default() -> Self {
        let cap = NonZeroUsize::new(KEYS_PER_RULE).expect("non-zero");
        RuleState {
            seen: LruCache::new(cap),
            rate: LruCache::new(cap),
        }
    }
}

impl RuleState {
    /// True when `key` was first seen less than `ttl` ago; otherwise records it as seen now. The first
    /// sighting counts (it is not refreshed), so a steady storm is let through again once per `ttl`.
    pub fn seen(&mut self, key: &str, ttl: Duration, now: Timestamp) -> bool {
        if let Some(first) = self.seen.get(key)
            && elapsed(*first, now) < ttl
        {
            return true;
        }
        self.seen.put(key.to_owned(), now);
        false
    }

    /// A token bucket of `n` tokens refilled over `per`: true (and one token used) while under the rate.
    pub fn rate(&mut self, key: &str, n: f64, per: Duration, now: Timestamp) -> bool {
        let bucket = self
            .rate
            .get_or_insert_mut(key.to_owned(), || Bucket { tokens: n, at: now });
        let refill =
            elapsed(bucket.at, now).as_secs_f64() * n / per.as_secs_f64().max(f64::MIN_POSITIVE);
        bucket.tokens = (bucket.tokens + refill).min(n);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Time from `a` to `b`, zero if the clock went backwards.
fn elapsed(a: Timestamp, b: Timestamp) -> Duration {
    Duration::try_from(b.duration_since(a)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn seen_expires_after_its_ttl() {
        let mut s = RuleState::default();
        let ttl = Duration::from_secs(600);
        assert!(!s.seen("disk", ttl, t(0)));
        assert!(s.seen("disk", ttl, t(1)));
        assert!(s.seen("disk", ttl, t(599)));
        assert!(!s.seen("disk", ttl, t(600)), "expired: seen afresh");
        assert!(s.seen("disk", ttl, t(601)));
        assert!(!s.seen("other", ttl, t(601)));
    }

    #[test]
    fn seen_memory_is_bounded() {
        let mut s = RuleState::default();
        for i in 0..KEYS_PER_RULE + 10 {
            s.seen(&i.to_string(), Duration::from_secs(60), t(0));
        }
        assert_eq!(s.seen.len(), KEYS_PER_RULE);
    }

    #[test]
    fn rate_refills_over_time() {
        let mut s = RuleState::default();
        let per = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(s.rate("k", 3.0, per, t(0)));
        }
        assert!(!s.rate("k", 3.0, per, t(0)), "burst used up");
        assert!(!s.rate("k", 3.0, per, t(19)));
        assert!(s.rate("k", 3.0, per, t(20)), "one token back after 20 s");
        assert!(!s.rate("k", 3.0, per, t(21)));
        for _ in 0..3 {
            assert!(s.rate("k", 3.0, per, t(1000)));
        }
        assert!(!s.rate("k", 3.0, per, t(1000)), "never more than the burst");
    }
}
