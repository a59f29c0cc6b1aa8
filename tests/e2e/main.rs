//! End-to-end tests: the real `herald` binary against real `redis-server` processes, one per test.

mod util;

mod answers;
mod bad_input;
mod cli;
mod desk;
mod desktop;
mod publish;
mod receive;
mod reconnect;
mod reload;
mod rules;
mod streams;
mod tls;
mod trust;
