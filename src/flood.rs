//! Flood control: a token bucket per publisher (its signing key, or the channel when unsigned), before
//! the rules, so one runaway script cannot bury everything else — or the user. What is held back is
//! counted and summarised ("37 notifications suppressed from channel alerts:ci") once per interval.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::config::FloodConfig;
use crate::rules::state::RuleState;

pub struct Flood {
    config: FloodConfig,
    buckets: RuleState,
    suppressed: BTreeMap<String, u64>,
}

impl Flood {
    pub fn new(config: FloodConfig) -> Self {
        Flood {
            config,
            buckets: RuleState::default(),
            suppressed: BTreeMap::new(),
        }
    }

    /// Takes new limits, keeping the buckets.
    pub fn reconfigure(&mut self, config: FloodConfig) {
        self.config = config;
    }

    /// Whether a message from `publisher` may pass now; counts it when not.
    pub fn admit(&mut self, publisher: &str, now: Timestamp) -> bool {
        let burst = f64::from(self.config.burst);
        let refill = Duration::from_secs_f64(burst / self.config.per_second);
        let ok = self.buckets.rate(publisher, burst, refill, now);
        if !ok {
            *self.suppressed.entry(publisher.to_owned()).or_default() += 1;
        }
        ok
    }

    /// The publishers held back since the last call, with how many each.
    pub fn take_summaries(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.suppressed).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood(burst: u32, per_second: f64) -> Flood {
        Flood::new(FloodConfig {
            burst,
            per_second,
            summary_every: Duration::from_secs(60),
        })
    }

    #[test]
    fn never_more_than_burst_plus_rate_times_elapsed() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        for (burst, rate) in [(1, 0.5), (5, 2.0), (20, 1.0), (50, 10.0)] {
            let mut f = flood(burst, rate);
            let mut admitted = 0u32;
            // 10 s of a message every 10 ms.
            for ms in (0..10_000).step_by(10) {
                let now = t0 + jiff::SignedDuration::from_millis(ms);
                if f.admit("p", now) {
                    admitted += 1;
                }
                let bound = f64::from(burst) + rate * (ms as f64 / 1000.0);
                assert!(
                    f64::from(admitted) <= bound + 1e-9,
                    "burst {burst}, rate {rate}: {admitted} > {bound} at {ms} ms"
                );
            }
            let summaries = f.take_summaries();
            assert_eq!(summaries.len(), 1);
            assert_eq!(u64::from(admitted) + summaries[0].1, 1000);
        }
    }

    #[test]
    fn publishers_have_their_own_buckets() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut f = flood(2, 0.1);
        assert!(f.admit("a", t0) && f.admit("a", t0) && !f.admit("a", t0));
        assert!(f.admit("b", t0), "another publisher is unaffected");
        assert_eq!(f.take_summaries(), vec![("a".to_owned(), 1)]);
        assert!(f.take_summaries().is_empty());
    }
}
