//! Presenters put notifications in front of the user and collect answers.
//!
//! The work is split in two halves with different owners: [`Presenter`] shows (`show`, `notice`,
//! `answered`) and is shared by every task; [`Dialogs`] asks questions and is owned by the single dialog
//! worker, so at most one question is open at a time and answers can never be attributed to the wrong
//! question. Kinds (`[presenter] kind`): `auto`, `desktop`, `console`, `null`.

pub mod console;
pub mod desktop;
pub mod text;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::{DialogStyle, PresenterConfig, PresenterKind};
use crate::message::{Answer, AnsweredBy, Notification};
use crate::rules::Route;
use console::{ConsoleDialogs, Event, Printer};
use desktop::Desktop;

/// A notification on its way to the user, with the channel it arrived on and where rules sent it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub note: Notification,
    pub route: Option<Route>,
    /// For stream entries: acknowledged once the outcome is final.
    pub ack: Option<crate::source::stream::AckToken>,
}

/// Which presenter is active once `auto` has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Console,
    Desktop,
    Null,
}

/// The showing half, shared by all tasks.
#[derive(Debug)]
pub struct Presenter {
    active: Active,
    printer: Printer,
    desktop: Option<Arc<Desktop>>,
    dialogs: DialogStyle,
    icon: Option<String>,
}

impl Presenter {
    /// Resolves `auto`: the desktop where a session bus and a display exist, else the console.
    pub fn new(config: &PresenterConfig) -> Presenter {
        let active = match config.kind {
            PresenterKind::Auto if desktop::session_available() => Active::Desktop,
            PresenterKind::Auto | PresenterKind::Console => Active::Console,
            PresenterKind::Desktop => Active::Desktop,
            PresenterKind::Null => Active::Null,
        };
        debug!(?active, "presenter");
        Presenter {
            active,
            printer: Printer,
            desktop: (active == Active::Desktop).then(|| Arc::new(Desktop::new(config))),
            dialogs: config.dialogs,
            icon: config.icon.clone(),
        }
    }

    pub fn active(&self) -> Active {
        self.active
    }

    /// Shows a notification that asks nothing. On the desktop the toast is sent in the background so
    /// a slow notification server never holds up the pipeline; if it fails, the console shows it.
    pub fn show(&self, d: &Delivery) {
        match (&self.desktop, d.route) {
            (Some(desktop), route) if route != Some(Route::Console) => {
                let (desktop, d) = (desktop.clone(), d.clone());
                tokio::spawn(async move {
                    if let Err(why) = desktop.toast(&d.note).await {
                        desktop.warn_once(&why);
                        Printer.print(&Event::shown(&d));
                    }
                });
            }
            _ if self.active == Active::Null => {}
            _ => self.printer.print(&Event::shown(d)),
        }
    }

    /// Reports an answer, whoever gave it (printed by the console presenter).
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
        match &self.desktop {
            Some(_) => self.show(&Delivery {
                channel: "herald".into(),
                note: Notification {
                    id: crate::message::new_id(),
                    title: "Herald".into(),
                    message: text.to_owned(),
                    kind: crate::message::Kind::Simple,
                    reply_channel: None,
                    priority: crate::message::Priority::Normal,
                    expires_at: None,
                    extra: serde_json::Map::new(),
                    signed_by: None,
                },
                route: None,
                ack: None,
            }),
            None if self.active == Active::Console => self.printer.print(&Event::Notice { text }),
            None => {}
        }
    }

    /// The asking half, for the dialog worker.
    pub fn dialogs(&self) -> Dialogs {
        match (self.active, &self.desktop) {
            (Active::Desktop, Some(desktop)) => Dialogs::Desktop {
                desktop: desktop.clone(),
                style: self.dialogs,
                icon: self.icon.clone(),
            },
            (Active::Console, _) => Dialogs::Console(ConsoleDialogs::new(self.printer)),
            _ => Dialogs::Null,
        }
    }
}

/// The asking half: owned by exactly one task.
pub enum Dialogs {
    Console(ConsoleDialogs),
    Desktop {
        desktop: Arc<Desktop>,
        style: DialogStyle,
        icon: Option<String>,
    },
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
            Dialogs::Desktop {
                desktop,
                style,
                icon,
            } => {
                let expiry = d.note.expires_at.map(crate::wait::instant_of);
                let style = match d.route {
                    Some(Route::Dialog) => DialogStyle::Modal,
                    Some(Route::Toast) => DialogStyle::Actions,
                    _ => *style,
                };
                let result = match style {
                    DialogStyle::Modal => {
                        desktop::ask_modal(&d.note, icon.as_deref(), expiry, shutdown).await
                    }
                    DialogStyle::Actions => {
                        desktop.ask_with_actions(&d.note, expiry, shutdown).await
                    }
                };
                match result {
                    Ok(answer @ (Answer::Ok | Answer::Cancel)) => (answer, AnsweredBy::User),
                    Ok(answer @ Answer::Dismissed) if !shutdown.is_cancelled() => {
                        (answer, AnsweredBy::User)
                    }
                    Ok(answer) => (answer, AnsweredBy::Herald),
                    Err(why) => {
                        desktop.warn_once(&why);
                        // Printed so it is not lost; answered Undeliverable, never Cancel.
                        Printer.print(&Event::shown(d));
                        (Answer::Undeliverable, AnsweredBy::Herald)
                    }
                }
            }
            Dialogs::Null => (Answer::Undeliverable, AnsweredBy::Herald),
        }
    }
}
