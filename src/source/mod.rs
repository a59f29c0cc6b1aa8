//! Where notifications come from: Redis pub/sub (`pubsub`, fire and forget, through a bounded
//! `backlog`) and Redis Streams (`stream`, consumer groups, acknowledged once handled). Both survive
//! any outage. Each source hands raw payloads to the agent as [`Incoming`]; decoding happens
//! downstream so every source shares one size cap and one set of error counters.

pub mod backlog;
pub mod pubsub;
pub mod stream;

/// One raw message as it arrived, before any decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The real channel it was published on (not the pattern that matched it), or the stream.
    pub channel: String,
    pub payload: Vec<u8>,
    /// For stream entries: what to acknowledge once the outcome is final.
    pub ack: Option<stream::AckToken>,
}
