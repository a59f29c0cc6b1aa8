//! The local memory of handled notifications, so a stream entry is shown once even when Redis
//! delivers it again (after a crash, a reclaimed pending entry, or a publisher's retried XADD).
//!
//! An embedded database (redb: pure Rust, crash-safe, fsync on commit) under the XDG state dir, one
//! file per config. Ids are kept for `RETENTION` and pruned at start and every hour, so the file stays
//! bounded however long the agent runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// id → unix seconds when it was handled.
const HANDLED: TableDefinition<&str, i64> = TableDefinition::new("handled");

/// How long a handled id is remembered: longer than any sensible stream retention or outage.
pub const RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

/// Handled ids, on disk.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store for `config` under `dir`.
    pub fn open(dir: &Path, config: &Path) -> Result<Store, StoreError> {
        let path = dir.join(format!("{}.redb", crate::lock::file_stem_for(config)));
        let err = |message: String| StoreError {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| err(e.to_string()))?;
        let store = Store {
            db,
            path: path.clone(),
        };
        // Create the table so reads never fail on a fresh file.
        store.write(|_| Ok(())).map_err(|e| err(e.to_string()))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `id` was handled before.
    pub fn is_handled(&self, id: &str) -> Result<bool, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HANDLED)?;
        Ok(table.get(id)?.is_some())
    }

    /// Records `id` as handled, durably.
    pub fn mark_handled(&self, id: &str) -> Result<(), redb::Error> {
        let now = Timestamp::now().as_second();
        self.write(|table| {
            table.insert(id, now)?;
            Ok(())
        })
    }

    /// Forgets ids older than [`RETENTION`]; returns how many.
    pub fn prune(&self) -> Result<usize, redb::Error> {
        let cutoff = Timestamp::now().as_second() - RETENTION.as_secs() as i64;
        let mut removed = 0;
        self.write(|table| {
            table.retain(|_, at| {
                let keep = at >= cutoff;
                removed += usize::from(!keep);
                keep
            })?;
            Ok(())
        })?;
        Ok(removed)
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, i64>) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(HANDLED)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Where state lives when `--state-dir` is not given: `$XDG_STATE_HOME/herald`.
pub fn default_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("herald")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_ids_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald.toml");
        {
            let store = Store::open(dir.path(), &config).unwrap();
            assert!(!store.is_handled("a").unwrap());
            store.mark_handled("a").unwrap();
            assert!(store.is_handled("a").unwrap());
        }
        let store = Store::open(dir.path(), &config).unwrap();
        assert!(store.is_handled("a").unwrap());
        assert!(!store.is_handled("b").unwrap());
        assert_eq!(store.prune().unwrap(), 0);
    }
}
