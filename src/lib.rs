//! Herald: a desktop notification agent. It subscribes to Redis channels, decodes each JSON
//! notification, shows it through a presenter and sends the user's answer back to the publisher.
//!
//! # Layout
//!
//! Data flows one way: source → decode/verify → rules → presenter → reply.
//!
//! - [`cli`]: the `herald` commands (`run`, `check`, `publish`, `rules`, `keygen`, `pack`, `agents`,
//!   `replay`), logging, exit codes.
//! - [`connect`]: opening Redis clients, `rediss://` with rustls and the config's CA.
//! - [`config`]: raw TOML types, validation that reports every error with file and line, the
//!   validated [`config::Config`], and how the Redis URL is found.
//! - [`source`]: where raw payloads come from: [`source::pubsub`], the reconnecting session loop
//!   feeding a byte-bounded [`source::backlog`], and [`source::stream`], consumer groups
//!   acknowledged after the outcome.
//! - [`message`]: the wire protocol: decoding (size cap first) into a [`message::Notification`],
//!   and the [`message::Response`] sent back.
//! - [`rules`]: the sandboxed Luau rule engine on its own thread, the `herald` Lua module, rule
//!   packs and `herald rules test`.
//! - [`present`]: presenters (desktop, console, null), safe text, and the one-question-at-a-time
//!   dialog half.
//! - [`reply`]: publishing responses with retry, at most one per notification id.
//! - [`agent`]: the wiring of `herald run` and its shutdown order.
//! - [`flood`]: per-publisher token buckets and suppression summaries.
//! - [`lock`]: one agent per user and config.
//! - [`presence`]: the `herald:agent:<host>` keys that say who is listening.
//! - [`stats`]: per-message failure counters.
//! - [`store`]: handled ids on disk, so a re-delivered entry or a replayed signature is caught.
//! - [`trust`]: Ed25519 signed envelopes: signing, verifying, keys.
//! - [`wait`]: optional deadlines for `select!`.

pub mod agent;
pub mod cli;
pub mod config;
pub mod connect;
pub mod flood;
pub mod lock;
pub mod message;
pub mod presence;
pub mod present;
pub mod reply;
pub mod rules;
pub mod source;
pub mod stats;
pub mod store;
pub mod trust;
pub mod wait;
