//! Where notifications come from. Today: Redis pub/sub (`pubsub`), one long-lived session loop that
//! survives any outage. Each source hands raw payloads to the agent as [`Incoming`]; decoding happens
//! downstream so every source shares one size cap and one set of error counters.

pub mod pubsub;

/// One raw message as it arrived, before any decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The real channel it was published on (not the pattern that matched it).
    pub channel: String,
    pub payload: Vec<u8>,
}
