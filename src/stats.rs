//! Counters for everything that can go wrong per message. Failures are never fatal, so they must be
//! visible somewhere: each is logged when it happens and summed here for the shutdown summary.

use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The agent's counters, shared by every task.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: Counter,
    pub invalid: Counter,
    pub unverified: Counter,
    pub suppressed: Counter,
    pub dropped: Counter,
    pub silenced: Counter,
    pub rule_errors: Counter,
    pub shown: Counter,
    pub answered: Counter,
    pub expired: Counter,
    pub replies_sent: Counter,
    pub replies_refused: Counter,
    pub replies_lost: Counter,
    pub outages: Counter,
    pub reloads: Counter,
    pub reload_failures: Counter,
    /// Pub/sub messages dropped because the backlog was full (the agent fell behind).
    pub overflowed: Counter,
}

impl Stats {
    /// `name=value` pairs for the summary log line.
    pub fn summary(&self) -> String {
        let pairs = [
            ("received", &self.received),
            ("invalid", &self.invalid),
            ("unverified", &self.unverified),
            ("suppressed", &self.suppressed),
            ("dropped", &self.dropped),
            ("silenced", &self.silenced),
            ("rule_errors", &self.rule_errors),
            ("shown", &self.shown),
            ("answered", &self.answered),
            ("expired", &self.expired),
            ("replies_sent", &self.replies_sent),
            ("replies_refused", &self.replies_refused),
            ("replies_lost", &self.replies_lost),
            ("outages", &self.outages),
            ("reloads", &self.reloads),
            ("reload_failures", &self.reload_failures),
            ("overflowed", &self.overflowed),
        ];
        pairs
            .iter()
            .map(|(n, c)| format!("{n}={}", c.get()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
