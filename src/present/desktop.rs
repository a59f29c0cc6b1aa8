//! The desktop presenter: toasts through the freedesktop notification server (notify-rust's async
//! API on zbus/tokio), and questions as native dialogs or as toasts with buttons.
//!
//! Dialogs on Linux are drawn by `zenity`, driven directly rather than through rfd: rfd's portal
//! backend turns on Pango markup for untrusted text, reports a closed window as `Cancel`, and cannot
//! close a dialog when its question expires. Here zenity runs with `--no-markup` and `--switch`
//! buttons, so OK, Cancel and a closed window (`Dismissed`) are told apart, and the process is killed
//! on expiry or shutdown. When no dialog can be shown (no display, no zenity, no notification server)
//! the answer is `Undeliverable`, never a `Cancel` nobody pressed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use notify_rust::{Timeout, Urgency};
use tokio::process::Command;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::text;
use crate::config::PresenterConfig;
use crate::message::{Answer, Kind, Notification, Priority};

/// Why the desktop could not show something.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")]
    NoDisplay,
    #[error("the dialog helper `zenity` is not installed")]
    NoZenity,
    #[error("the dialog could not be shown: {0}")]
    DialogFailed(String),
    #[error("the notification server is unavailable: {0}")]
    NoServer(String),
}

/// Whether a desktop session is there: a session bus and a display.
pub fn session_available() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    (set("DISPLAY") || set("WAYLAND_DISPLAY")) && set("DBUS_SESSION_BUS_ADDRESS")
}

/// Shows toasts; shared by every task.
#[derive(Debug)]
pub struct Desktop {
    timeout: Option<Duration>,
    icon: Option<String>,
    markup: OnceCell<bool>,
    warned: AtomicBool,
}

impl Desktop {
    pub fn new(config: &PresenterConfig) -> Self {
        Desktop {
            timeout: config.toast_timeout,
            icon: config.icon.clone(),
            markup: OnceCell::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// Logs an unavailable desktop once, not once per message.
    pub fn warn_once(&self, why: &Unavailable) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            warn!(reason = %why, "cannot use the desktop; notifications go to the console, questions are answered Undeliverable");
        } else {
            debug!(reason = %why, "desktop unavailable");
        }
    }

    /// A toast for a notification that asks nothing.
    pub async fn toast(&self, note: &Notification) -> Result<(), Unavailable> {
        let n = self.build(note).await;
        n.show_async()
            .await
            .map_err(|e| Unavailable::NoServer(e.to_string()))?;
        Ok(())
    }

    /// A toast with one button per answer; waits for a click, a close, expiry or shutdown.
    ///
    /// The signal stream is opened *before* the toast is sent: a click that comes at once must not
    /// slip through between showing the toast and starting to listen.
    pub async fn ask_with_actions(
        &self,
        note: &Notification,
        expiry: Option<tokio::time::Instant>,
        shutdown: &CancellationToken,
    ) -> Result<Answer, Unavailable> {
        let unavailable = |e: zbus::Error| Unavailable::NoServer(e.to_string());
        let conn = zbus::Connection::session().await.map_err(unavailable)?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.freedesktop.Notifications")
            .build()
            .map_err(unavailable)?;
        let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, None)
            .await
            .map_err(unavailable)?;
        let mut n = self.build(note).await;
        n.timeout(Timeout::Never);
        n.action("OK", "OK");
        if note.kind == Kind::OkCancel {
            n.action("Cancel", "Cancel");
        }
        let handle = n
            .show_async()
            .await
            .map_err(|e| Unavailable::NoServer(e.to_string()))?;
        let id = handle.id();
        let clicked = async {
            while let Some(Ok(msg)) = signals.next().await {
                if let Some(answer) = action_answer(&msg, id) {
                    return answer;
                }
            }
            Answer::Dismissed // the bus went away: the toast went with it
        };
        let outcome = tokio::select! {
            answer = clicked => return Ok(answer),
            _ = crate::wait::sleep_until_opt(expiry) => Answer::Expired,
            _ = shutdown.cancelled() => Answer::Dismissed,
        };
        handle.close_async().await;
        Ok(outcome)
    }

    async fn build(&self, note: &Notification) -> notify_rust::Notification {
        let markup = *self.markup.get_or_init(server_parses_markup).await;
        let body = text::body(&note.message);
        let mut n = notify_rust::Notification::new();
        n.appname("Herald")
            .summary(&text::title(&note.title))
            .body(&if markup {
                text::escape_markup(&body)
            } else {
                body
            })
            .urgency(urgency(note.priority));
        if let Some(t) = self.timeout {
            n.timeout(Timeout::Milliseconds(
                t.as_millis().min(u32::MAX as u128) as u32
            ));
        }
        if let Some(icon) = &self.icon {
            n.icon(icon);
        }
        n
    }
}

/// The answer an `ActionInvoked` or `NotificationClosed` signal gives for toast `id`, if it is one.
fn action_answer(msg: &zbus::Message, id: u32) -> Option<Answer> {
    let header = msg.header();
    match header.member()?.as_str() {
        "ActionInvoked" => match msg.body().deserialize::<(u32, String)>() {
            Ok((nid, action)) if nid == id => match action.as_str() {
                "OK" => Some(Answer::Ok),
                "Cancel" => Some(Answer::Cancel),
                _ => None, // "default" (a click on the body) answers nothing
            },
            _ => None,
        },
        "NotificationClosed" => match msg.body().deserialize::<(u32, u32)>() {
            Ok((nid, _reason)) if nid == id => Some(Answer::Dismissed),
            _ => None,
        },
        _ => None,
    }
}

/// `low` → low, `normal`/`high` → normal, `critical` → critical.
pub fn urgency(p: Priority) -> Urgency {
    match p {
        Priority::Low => Urgency::Low,
        Priority::Normal | Priority::High => Urgency::Normal,
        Priority::Critical => Urgency::Critical,
    }
}

/// Whether the notification server renders markup in bodies (and so needs `<` escaped).
async fn server_parses_markup() -> bool {
    let caps = async {
        let conn = zbus::Connection::session().await?;
        let reply = conn
            .call_method(
                Some("org.freedesktop.Notifications"),
                "/org/freedesktop/Notifications",
                Some("org.freedesktop.Notifications"),
                "GetCapabilities",
                &(),
            )
            .await?;
        reply.body().deserialize::<Vec<String>>()
    };
    match caps.await {
        Ok(caps) => caps.iter().any(|c| c == "body-markup"),
        // Unknown: escaping is the safe side.
        Err(_) => true,
    }
}

/// Asks one question in a zenity window.
pub async fn ask_modal(
    note: &Notification,
    icon: Option<&str>,
    expiry: Option<tokio::time::Instant>,
    shutdown: &CancellationToken,
) -> Result<Answer, Unavailable> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
        return Err(Unavailable::NoDisplay);
    }
    let zenity = which::which("zenity").map_err(|_| Unavailable::NoZenity)?;
    let mut cmd = Command::new(zenity);
    cmd.args([
        "--question",
        "--switch",
        "--no-markup",
        "--no-wrap",
        "--extra-button",
        "OK",
    ]);
    if note.kind == Kind::OkCancel {
        cmd.args(["--extra-button", "Cancel"]);
    }
    // The title goes in the text as well: without a window manager (or with a minimal one) the window
    // title is not drawn, and the question must not lose its headline.
    let title = text::title(&note.title);
    cmd.arg("--title").arg(&title);
    cmd.arg("--text")
        .arg(format!("{title}\n\n{}", text::body(&note.message)));
    if let Some(icon) = icon {
        cmd.arg("--icon-name").arg(icon);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Unavailable::DialogFailed(e.to_string()))?;
    tokio::select! {
        out = child.wait_with_output() => {
            let out = out.map_err(|e| Unavailable::DialogFailed(e.to_string()))?;
            parse_zenity(out.status.code(), &out.stdout, &out.stderr)
        }
        // Dropping the child kills the window.
        _ = crate::wait::sleep_until_opt(expiry) => Ok(Answer::Expired),
        _ = shutdown.cancelled() => Ok(Answer::Dismissed),
    }
}

/// zenity `--switch` prints the pressed button's label and exits 1; a closed window prints nothing.
/// A window that never opened also exits 1 with nothing printed, so its stderr decides.
fn parse_zenity(code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Result<Answer, Unavailable> {
    let pressed = String::from_utf8_lossy(stdout);
    let errors = String::from_utf8_lossy(stderr);
    match (code, pressed.trim()) {
        (_, "OK") => Ok(Answer::Ok),
        (_, "Cancel") => Ok(Answer::Cancel),
        (Some(1), "") if !errors.contains("cannot open display") => Ok(Answer::Dismissed),
        _ => Err(Unavailable::DialogFailed(format!(
            "zenity exited with {code:?}: {}",
            errors
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zenity_results_are_told_apart() {
        assert_eq!(parse_zenity(Some(1), b"OK\n", b"").unwrap(), Answer::Ok);
        assert_eq!(
            parse_zenity(Some(1), b"Cancel\n", b"").unwrap(),
            Answer::Cancel
        );
        assert_eq!(
            parse_zenity(
                Some(1),
                b"",
                b"Gtk-Message: mapped without a transient parent"
            )
            .unwrap(),
            Answer::Dismissed
        );
        assert!(parse_zenity(Some(1), b"", b"Gtk-WARNING **: cannot open display: :9").is_err());
        assert!(parse_zenity(None, b"", b"").is_err(), "killed by a signal");
    }

    #[test]
    fn priorities_map_to_urgencies() {
        assert_eq!(urgency(Priority::Low), Urgency::Low);
        assert_eq!(urgency(Priority::High), Urgency::Normal);
        assert_eq!(urgency(Priority::Critical), Urgency::Critical);
    }
}
