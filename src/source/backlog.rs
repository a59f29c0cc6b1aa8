//! The pub/sub backlog: messages read from Redis and not yet taken by the agent, bounded in bytes
//! (`[agent] max_backlog_mb`).
//!
//! Reading the connection at full speed into a bounded backlog is what keeps Redis from cutting a
//! slow subscriber off (and silently losing all it had buffered). When the backlog is full, the
//! oldest messages make room for the new ones: after a storm the user sees where things stand now,
//! not how the storm began. Every drop is counted (`overflowed`) and warned about, at most once a
//! second; the agent turns the count into a notice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::Incoming;
use crate::stats::Stats;

/// The producer side, fed by the pub/sub sessions. Dropping it closes the backlog.
pub struct Backlog {
    inner: Arc<Inner>,
    /// Drops since the last warning, and when that was.
    dropped: usize,
    warned: Option<Instant>,
}

/// The consumer side: hands messages to the agent in order.
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Incoming>,
    bytes: usize,
    closed: bool,
}

/// A new, empty backlog.
pub fn backlog() -> (Backlog, Relay) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State::default()),
        ready: Notify::new(),
    });
    (
        Backlog {
            inner: inner.clone(),
            dropped: 0,
            warned: None,
        },
        Relay { inner },
    )
}

/// What a queued message costs: its payload, its channel name and the queue's own bookkeeping, so
/// a flood of empty messages on long channel names is bounded too.
fn held_bytes(msg: &Incoming) -> usize {
    msg.payload.len() + msg.channel.len() + std::mem::size_of::<Incoming>() + 16
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backlog {
    /// Queues `msg`; past `limit` bytes the oldest messages are dropped (the newest is always kept).
    pub fn push(&mut self, msg: Incoming, limit: usize, stats: &Stats) {
        let (dropped, held) = {
            let mut state = self.inner.state();
            state.bytes += held_bytes(&msg);
            state.queue.push_back(msg);
            let mut dropped = 0;
            while state.bytes > limit && state.queue.len() > 1 {
                let oldest = state.queue.pop_front().expect("more than one queued");
                state.bytes -= held_bytes(&oldest);
                dropped += 1;
            }
            (dropped, state.bytes)
        };
        self.inner.ready.notify_one();
        if dropped > 0 {
            self.count_drops(dropped, held, stats);
        }
    }

    fn count_drops(&mut self, n: usize, held: usize, stats: &Stats) {
        stats.overflowed.add(n as u64);
        self.dropped += n;
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            warn!(
                dropped = self.dropped,
                backlog_bytes = held,
                "falling behind: pub/sub backlog full ([agent] max_backlog_mb); dropping the oldest messages"
            );
            self.dropped = 0;
            self.warned = Some(Instant::now());
        }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.inner.state().closed = true;
        self.inner.ready.notify_one();
    }
}

impl Relay {
    /// The oldest queued message, waiting for one; `None` once the backlog is closed and empty.
    pub async fn next(&self) -> Option<Incoming> {
        loop {
            {
                let mut state = self.inner.state();
                if let Some(msg) = state.queue.pop_front() {
                    state.bytes -= held_bytes(&msg);
                    return Some(msg);
                }
                if state.closed {
                    return None;
                }
            }
            // A push between the check and here leaves a permit, so this cannot miss it.
            self.inner.ready.notified().await;
        }
    }

    /// Hands everything to `out` in order, waiting whenever the agent is busy, until the backlog is
    /// closed and empty or the agent stops reading.
    pub async fn run(self, out: mpsc::Sender<Incoming>) {
        while let Some(msg) = self.next().await {
            if out.send(msg).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize, payload_len: usize) -> Incoming {
        Incoming {
            channel: format!("c{i}"),
            payload: vec![b'x'; payload_len],
            ack: None,
        }
    }

    #[tokio::test]
    async fn past_its_bound_the_oldest_make_room_and_every_drop_is_counted() {
        let stats = Stats::default();
        let (mut backlog, relay) = backlog();
        let one = held_bytes(&msg(0, 1000));
        for i in 0..10 {
            backlog.push(msg(i, 1000), 3 * one, &stats);
        }
        assert_eq!(stats.overflowed.get(), 7);
        drop(backlog);
        let mut left = Vec::new();
        while let Some(m) = relay.next().await {
            left.push(m.channel);
        }
        assert_eq!(left, ["c7", "c8", "c9"], "the newest three, in order");
    }

    #[tokio::test]
    async fn a_message_larger_than_the_bound_is_still_delivered() {
        let stats = Stats::default();
        let (mut backlog, relay) = backlog();
        backlog.push(msg(0, 10), 1 << 20, &stats);
        backlog.push(msg(1, 2 << 20), 1 << 20, &stats);
        assert_eq!(stats.overflowed.get(), 1, "the small one made room");
        assert_eq!(relay.next().await.unwrap().channel, "c1");
    }

    #[tokio::test]
    async fn the_relay_waits_for_messages_and_ends_when_the_backlog_closes() {
        let stats = Stats::default();
        let (mut backlog, relay) = backlog();
        let (tx, mut rx) = mpsc::channel(1);
        let relaying = tokio::spawn(relay.run(tx));
        backlog.push(msg(1, 5), 1 << 20, &stats);
        assert_eq!(rx.recv().await.unwrap().channel, "c1");
        backlog.push(msg(2, 5), 1 << 20, &stats);
        drop(backlog);
        assert_eq!(rx.recv().await.unwrap().channel, "c2");
        assert!(rx.recv().await.is_none(), "closed after the last one");
        relaying.await.unwrap();
    }
}
