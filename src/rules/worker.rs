//! The rules thread. The Lua VM is `!Send`, so it is built on, and never leaves, a thread of its own;
//! the async agent talks to it through a channel and gets each result back on a oneshot. Messages
//! travel in batches: under a flood one hand-off (and one thread wake-up) carries many messages,
//! while a lone message still goes on its own at once.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use super::engine::{Engine, EngineConfig, LoadError, Processed, ReloadSummary, Ticked};
use crate::message::Notification;

enum Job {
    Messages {
        batch: Vec<(String, Notification)>,
        reply: oneshot::Sender<Vec<Processed>>,
    },
    Tick {
        reply: oneshot::Sender<Ticked>,
    },
    /// Pins the rules' clock (benchmarks, demos).
    SetTime(Option<jiff::Timestamp>),
    Reload {
        config: Box<EngineConfig>,
        files: Vec<PathBuf>,
        reply: oneshot::Sender<Result<ReloadSummary, Vec<LoadError>>>,
    },
}

/// The async side of the rules thread. Dropping it stops the thread.
pub struct RulesHandle {
    jobs: std_mpsc::Sender<Job>,
    names: Vec<String>,
}

/// The rules thread is gone (it panicked); messages can no longer be filtered.
#[derive(Debug, thiserror::Error)]
#[error("the rules thread has stopped")]
pub struct Stopped;

impl RulesHandle {
    /// Starts the thread and loads `files`; returns once they compiled, or with every load error.
    pub fn spawn(config: EngineConfig, files: Vec<PathBuf>) -> Result<RulesHandle, Vec<LoadError>> {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let (loaded_tx, loaded_rx) = std_mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("herald-rules".into())
            .spawn(move || {
                let mut engine = match Engine::load(config, &files) {
                    Ok(engine) => {
                        let names = engine
                            .rule_names()
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>();
                        let _ = loaded_tx.send(Ok(names));
                        engine
                    }
                    Err(errors) => {
                        let _ = loaded_tx.send(Err(errors));
                        return;
                    }
                };
                for job in rx {
                    match job {
                        Job::Messages { batch, reply } => {
                            let processed = batch
                                .iter()
                                .map(|(channel, note)| engine.process(channel, note, false))
                                .collect();
                            let _ = reply.send(processed);
                        }
                        Job::Tick { reply } => {
                            let _ = reply.send(engine.tick());
                        }
                        Job::SetTime(at) => engine.set_time(at),
                        Job::Reload {
                            config,
                            files,
                            reply,
                        } => {
                            let _ = reply.send(engine.reload(*config, &files));
                        }
                    }
                }
            });
        let thread_error = |message: String| {
            vec![LoadError {
                file: "<rules thread>".into(),
                message,
            }]
        };
        spawned.map_err(|e| thread_error(e.to_string()))?;
        let names = loaded_rx
            .recv()
            .map_err(|_| thread_error("the rules thread stopped while loading".into()))??;
        Ok(RulesHandle { jobs, names })
    }

    /// The loaded rules, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Hands a batch of `(channel, notification)` to the rules without waiting; the results, in the
    /// batch's order, arrive together on the receiver. Batches are processed in the order submitted.
    pub fn submit(
        &self,
        batch: Vec<(String, Notification)>,
    ) -> Result<oneshot::Receiver<Vec<Processed>>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Messages { batch, reply })
            .map_err(|_| Stopped)?;
        Ok(rx)
    }

    /// Swaps in new rules between two messages; on error the old rules stay.
    pub async fn reload(
        &mut self,
        config: EngineConfig,
        files: Vec<PathBuf>,
    ) -> Result<ReloadSummary, Vec<LoadError>> {
        let (reply, rx) = oneshot::channel();
        let stopped = || {
            vec![LoadError {
                file: "<rules thread>".into(),
                message: Stopped.to_string(),
            }]
        };
        self.jobs
            .send(Job::Reload {
                config: Box::new(config),
                files,
                reply,
            })
            .map_err(|_| stopped())?;
        let summary = rx.await.map_err(|_| stopped())??;
        self.names = summary.rules.clone();
        Ok(summary)
    }

    /// Pins the rules' clock to `at` (`None`: the system clock again).
    pub fn set_time(&self, at: Option<jiff::Timestamp>) {
        let _ = self.jobs.send(Job::SetTime(at));
    }

    /// Runs every `on_tick`.
    pub async fn tick(&self) -> Result<Ticked, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(Job::Tick { reply }).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}
