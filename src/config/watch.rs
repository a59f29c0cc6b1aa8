//! Watching the config file and the rule packs, so a save takes effect by itself.
//!
//! Folders are watched, not files: editors save by writing a temporary file and renaming it over the
//! old one, which a watch on the file itself would lose. Only create, modify (data or name) and remove
//! events on the config file or on `*.luau`/`*.lua` files in a pack count; open, close and access
//! events do not, or reading the files during a reload would trigger the next reload. The watcher is
//! purely event-driven (inotify on Linux): it costs nothing while nothing changes. The agent
//! debounces what it reports ([`DEBOUNCE`]), so one save is one reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Config;

/// How long the agent gathers change events before it reloads once.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What counts as a change.
#[derive(Debug, Default)]
struct Interest {
    config_file: PathBuf,
    /// Folders whose rule files count.
    pack_dirs: BTreeSet<PathBuf>,
    /// Rule packs that are single files.
    pack_files: BTreeSet<PathBuf>,
}

impl Interest {
    fn matches(&self, path: &Path) -> bool {
        if path == self.config_file || self.pack_files.contains(path) {
            return true;
        }
        let is_rule = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("luau" | "lua")
        ) || path
            .file_name()
            .is_some_and(|n| n == crate::rules::packsig::SIG_FILE);
        is_rule
            && path
                .parent()
                .is_some_and(|dir| self.pack_dirs.contains(dir))
    }

    /// The folders to watch.
    fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs = self.pack_dirs.clone();
        for file in self.pack_files.iter().chain([&self.config_file]) {
            if let Some(dir) = file.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        dirs
    }
}

/// Sends `()` on its channel whenever the config or a rule changed.
pub struct ConfigWatcher {
    watcher: RecommendedWatcher,
    interest: Arc<Mutex<Interest>>,
    watched: BTreeSet<PathBuf>,
}

impl ConfigWatcher {
    /// Starts watching what `config` names.
    pub fn start(
        config: &Config,
        changed: mpsc::UnboundedSender<()>,
    ) -> notify::Result<ConfigWatcher> {
        let interest = Arc::new(Mutex::new(Interest::default()));
        let filter = interest.clone();
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let event = match result {
                Ok(event) => event,
                Err(e) => {
                    warn!(error = %e, "watching the config failed");
                    return;
                }
            };
            let interest = filter.lock().unwrap_or_else(|p| p.into_inner());
            if counts(&event.kind) && event.paths.iter().any(|p| interest.matches(p)) {
                debug!(kind = ?event.kind, paths = ?event.paths, "config or rules changed");
                let _ = changed.send(());
            }
        })?;
        let mut watcher = ConfigWatcher {
            watcher,
            interest,
            watched: BTreeSet::new(),
        };
        watcher.follow(config);
        Ok(watcher)
    }

    /// Points the watch at what `config` names (after a reload the packs may differ).
    pub fn follow(&mut self, config: &Config) {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut next = Interest {
            config_file: absolute(&config.path),
            ..Interest::default()
        };
        for pack in &config.rules.packs {
            let pack = absolute(pack);
            if pack.is_file() {
                next.pack_files.insert(pack);
            } else {
                next.pack_dirs.insert(pack);
            }
        }
        let dirs = next.dirs();
        *self.interest.lock().unwrap_or_else(|p| p.into_inner()) = next;
        for gone in self.watched.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.watched) {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                warn!(dir = %dir.display(), error = %e, "cannot watch for changes; SIGHUP still reloads");
            }
        }
        self.watched = dirs;
    }
}

/// Create, modify (contents or name) and remove count; access (open, read, close) and metadata do not.
fn counts(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, RenameMode};

    #[test]
    fn only_changes_count_not_reads() {
        assert!(counts(&EventKind::Create(CreateKind::File)));
        assert!(counts(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(counts(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(!counts(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!counts(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
    }

    #[test]
    fn only_the_config_and_rule_files_count() {
        let mut i = Interest {
            config_file: "/c/herald.toml".into(),
            ..Interest::default()
        };
        i.pack_dirs.insert("/packs/a".into());
        assert!(i.matches(Path::new("/c/herald.toml")));
        assert!(!i.matches(Path::new("/c/.herald.toml.swp")));
        assert!(i.matches(Path::new("/packs/a/10-x.luau")));
        assert!(!i.matches(Path::new("/packs/a/notes.md")));
        assert!(!i.matches(Path::new("/packs/a/sub/x.luau")));
    }
}
