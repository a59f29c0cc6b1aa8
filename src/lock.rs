//! One agent per user and config. Two agents on the same config would show every dialog twice and send
//! two answers, so `herald run` takes an exclusive lock on a file under the XDG runtime dir and holds it
//! for its lifetime; the OS releases it even after `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another herald is already running with config {config} (pid {pid}); stop it first, or use another config"
    )]
    Held { config: PathBuf, pid: String },
    #[error("cannot create lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as the agent runs.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

impl InstanceLock {
    /// Locks `config` (any path; made absolute first) for this process.
    pub fn acquire(config: &Path) -> Result<InstanceLock, LockError> {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
        let dir = lock_dir();
        let path = dir.join(lock_name(&config));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    config,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(InstanceLock { _file: file, path })
    }
}

fn lock_dir() -> PathBuf {
    dirs::runtime_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("herald")
}

/// A readable, file-name-safe name for the config's lock.
fn lock_name(config: &Path) -> String {
    format!("{}.lock", file_stem_for(config))
}

/// A readable, file-name-safe stem naming one config (for its lock and its state).
pub fn file_stem_for(config: &Path) -> String {
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
    let flat: String = config
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tail = flat.len().saturating_sub(180);
    flat[tail..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald.toml");
        let first = InstanceLock::acquire(&config).unwrap();
        let err = InstanceLock::acquire(&config).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        InstanceLock::acquire(&config).unwrap();
    }
}
