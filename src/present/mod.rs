//! Presenters put notifications in front of the user and collect answers.
//!
//! The work is split in two halves with different owners: [`Presenter`] shows (`show`, `notice`,
//! `answered`) and is shared by every task; [`Dialogs`] asks questions and is owned by the single dialog
//! worker, so at most one question is open at a time and answers can never be attributed to the wrong
//! question. Kinds (`[presenter] kind`): `auto`, `desktop`, `console`, `null`.

pub mod console;

use tokio_util::sync::CancellationToken;

use crate::config::PresenterKind;
use crate::message::{Answer, AnsweredBy, Notification};
use console::{ConsoleDialogs, Event, Printer};

/// A notification on its way to the user, with the channel it arrived on.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub note: Notification,
}

/// Which presenter is active once `auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Console,
    Null,
}

/// Why a presenter kind cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum PresenterError {
    #[error(
        "the desktop presenter is not available in this build yet; use kind = \"console\" (or \"auto\")"
    )]
    DesktopUnavailable,
}

/// The showing half, shared by all tasks.
#[derive(Debug)]
pub struct Presenter {
    active: Active,
    printer: Printer,
}

impl Presenter {
    pub fn new(kind: PresenterKind) -> Result<Presenter, PresenterError> {
        let active = match kind {
            PresenterKind::Auto | PresenterKind::Console => Active::Console,
            PresenterKind::Null => Active::Null,
            PresenterKind::Desktop => return Err(PresenterError::DesktopUnavailable),
        };
        Ok(Presenter {
            active,
            printer: Printer,
        })
    }

    pub fn active(&self) -> Active {
        self.active
    }

    /// Shows a notification that asks nothing (`Simple`), or announces that a question is being asked.
    pub fn show(&self, d: &Delivery) {
        if self.active == Active::Console {
            self.printer.print(&Event::shown(d));
        }
    }

    /// Reports an answer, whoever gave it.
    pub fn answered(&self, note: &Notification, answer: Answer, by: &AnsweredBy) {
        if self.active == Active::Console {
            self.printer.print(&Event::Answered {
                id: &note.id,
                response: answer,
                answered_by: by.as_str(),
            });
        }
    }

    /// One of Herald's own notices (reload failures, suppression summaries).
    pub fn notice(&self, text: &str) {
        if self.active == Active::Console {
            self.printer.print(&Event::Notice { text });
        }
    }

    /// The asking half, for the dialog worker.
    pub fn dialogs(&self) -> Dialogs {
        match self.active {
            Active::Console => Dialogs::Console(ConsoleDialogs::new(self.printer)),
            Active::Null => Dialogs::Null,
        }
    }
}

/// The asking half: owned by exactly one task.
pub enum Dialogs {
    Console(ConsoleDialogs),
    /// Nobody is asked: every question is `Undeliverable`.
    Null,
}

impl Dialogs {
    /// Asks one question and waits for its answer, its expiry, or shutdown (which answers `Dismissed`).
    pub async fn ask(
        &mut self,
        d: &Delivery,
        shutdown: &CancellationToken,
    ) -> (Answer, AnsweredBy) {
        match self {
            Dialogs::Console(c) => c.ask(d, shutdown).await,
            Dialogs::Null => (Answer::Undeliverable, AnsweredBy::Herald),
        }
    }
}
