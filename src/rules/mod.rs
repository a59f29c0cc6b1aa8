//! Lua rules: every notification passes through the user's rules before a presenter sees it.
//!
//! Rules are Luau files returning `{ name, channels, on_message, on_tick }`, loaded from pack folders
//! in lexical order. They run sandboxed on a thread of their own (`worker`), with a CPU budget per
//! message and a memory cap; a rule that fails is logged, counted and handled per `[rules] on_error`,
//! and never stops the agent.
//!
//! - `engine`: the VM, compiled rules and the per-message pipeline (synchronous); `driver`: its hot
//!   path inside the VM (`driver.luau`: build `msg`, run the rules, read `msg` back in three calls).
//! - `api`: the `herald` module and `ctx`; `state`: `seen`/`rate` memory and the clock;
//!   `window`: `in_window`; `convert`: notification ⇄ Lua table.
//! - `worker`: the rules thread and its async handle.
//! - `testing`: `herald rules test` (`*.test.toml` beside the rules).

pub mod api;
pub mod convert;
mod driver;
pub mod engine;
pub mod packsig;
pub mod state;
pub mod testing;
pub mod window;
pub mod worker;

use std::path::{Path, PathBuf};

pub use api::{Effects, HostInfo, RuleNotice, RulePublish};
pub use convert::Route;
pub use engine::{
    Engine, EngineConfig, LoadError, Processed, ReloadSummary, RuleFailure, Step, Verdict,
};

use crate::config::Config;

/// The rule files of one pack folder, in load order; every problem in one line.
pub fn rule_files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    rule_files(&[dir.to_owned()]).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The rule files of `packs`, in load order: each pack (a folder, or a single file) in the order
/// given, the `*.luau` and `*.lua` files of a folder in lexical order.
pub fn rule_files(packs: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<LoadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for pack in packs {
        if pack.is_file() {
            files.push(pack.clone());
            continue;
        }
        match std::fs::read_dir(pack) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_rule_file(p))
                    .collect();
                found.sort();
                files.extend(found);
            }
            Err(e) => errors.push(LoadError {
                file: pack.display().to_string(),
                message: format!("cannot read rule pack: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn is_rule_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("luau" | "lua"))
}

/// The engine settings a config implies.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        on_error: config.rules.on_error,
        budget: config.rules.budget,
        memory_limit: config.rules.memory_limit,
        publish_allow: config.rules.publish_allow_set.clone(),
        tz: config.agent.timezone.clone(),
        host: HostInfo {
            name: config.agent.hostname.clone(),
            os: std::env::consts::OS.to_owned(),
            groups: config.agent.groups.clone(),
        },
    }
}

/// The rule files of the config's packs, refusing unsigned or modified packs where signatures are
/// required.
pub fn config_rule_files(config: &Config) -> Result<Vec<PathBuf>, Vec<LoadError>> {
    if config.rules.require_signed_packs {
        packsig::verify_all(&config.rules.packs, &config.trust.keys)?;
    }
    rule_files(&config.rules.packs)
}

/// Loads every rule the config names, on the calling thread.
pub fn load(config: &Config) -> Result<Engine, Vec<LoadError>> {
    let files = config_rule_files(config)?;
    Engine::load(engine_config(config), &files)
}

#[cfg(test)]
mod tests;
