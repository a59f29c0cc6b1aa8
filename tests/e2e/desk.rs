//! A real desktop for tests: a private D-Bus session bus (`dbus-daemon`), a notification server on it
//! that records every `Notify` call and can click buttons (`ActionInvoked`), and an X server (Xvfb)
//! whose windows `xdotool` finds and types into. All killed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use zbus::OwnedVariant;
use zbus::object_server::SignalEmitter;

use crate::util::PATIENCE;

/// A `dbus-daemon --session` of the test's own.
pub struct Bus {
    child: Child,
    pub address: String,
}

impl Bus {
    pub fn start() -> Bus {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon must be installed (scripts/install-deps installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Bus {
            child,
            address: line.trim().to_owned(),
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One recorded `Notify` call.
#[derive(Debug, Clone)]
pub struct Notified {
    pub id: u32,
    pub app_name: String,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
    pub urgency: Option<u8>,
}

struct Recorder {
    next_id: u32,
    calls: mpsc::Sender<Notified>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        self.next_id += 1;
        let urgency = hints.get("urgency").and_then(|v| u8::try_from(v).ok());
        let _ = self.calls.send(Notified {
            id: self.next_id,
            app_name,
            summary,
            body,
            actions,
            urgency,
        });
        self.next_id
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into(), "body-markup".into(), "actions".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "herald-test-recorder".into(),
            "herald".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    async fn close_notification(
        &self,
        id: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) {
        let _ = Recorder::notification_closed(&emitter, id, 3).await;
    }

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notification_closed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        reason: u32,
    ) -> zbus::Result<()>;
}

/// A notification server on `bus` that records what it is asked to show.
pub struct NotificationServer {
    runtime: tokio::runtime::Runtime,
    conn: zbus::Connection,
    calls: mpsc::Receiver<Notified>,
}

const PATH: &str = "/org/freedesktop/Notifications";

impl NotificationServer {
    pub fn start(bus: &Bus) -> NotificationServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, calls) = mpsc::channel();
        let conn = runtime.block_on(async {
            zbus::connection::Builder::address(bus.address.as_str())
                .name("org.freedesktop.Notifications")
                .serve_at(
                    PATH,
                    Recorder {
                        next_id: 0,
                        calls: tx,
                    },
                )
                .build()
                .await
                .unwrap()
        });
        NotificationServer {
            runtime,
            conn,
            calls,
        }
    }

    /// The next `Notify` call.
    pub fn next(&self) -> Notified {
        self.calls
            .recv_timeout(PATIENCE)
            .expect("a Notify call in time")
    }

    /// The user clicks the button `action` of notification `id`.
    pub fn click(&self, id: u32, action: &str) {
        self.runtime.block_on(async {
            let iface = self
                .conn
                .object_server()
                .interface::<_, Recorder>(PATH)
                .await
                .unwrap();
            Recorder::action_invoked(iface.signal_emitter(), id, action)
                .await
                .unwrap();
        });
    }

    /// The user closes notification `id` (reason 2: dismissed by the user).
    pub fn close(&self, id: u32) {
        self.runtime.block_on(async {
            let iface = self
                .conn
                .object_server()
                .interface::<_, Recorder>(PATH)
                .await
                .unwrap();
            Recorder::notification_closed(iface.signal_emitter(), id, 2)
                .await
                .unwrap();
        });
    }
}

/// An X server of the test's own.
pub struct Display {
    child: Child,
    pub name: String,
}

impl Display {
    pub fn start() -> Display {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb must be installed (scripts/install-deps installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Display {
            child,
            name: format!(":{}", line.trim()),
        }
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .expect("xdotool must be installed");
        assert!(
            out.status.success(),
            "xdotool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until a window titled exactly `title` is mapped; returns its id.
    pub fn wait_for_window(&self, title: &str) -> String {
        let pattern = format!("^{}$", regex_escape(title));
        let out = Command::new("timeout")
            .arg(PATIENCE.as_secs().to_string())
            .args([
                "xdotool",
                "search",
                "--sync",
                "--onlyvisible",
                "--name",
                &pattern,
            ])
            .env("DISPLAY", &self.name)
            .output()
            .unwrap();
        let id = String::from_utf8(out.stdout).unwrap();
        id.lines()
            .next()
            .unwrap_or_else(|| panic!("no window titled {title:?} within {PATIENCE:?}"))
            .to_owned()
    }

    /// Focuses `window` and types `keys` (xdotool key names) into it, as a person would.
    pub fn press(&self, window: &str, keys: &[&str]) {
        self.xdotool(&["windowfocus", "--sync", window]);
        let mut args = vec!["key", "--clearmodifiers", "--delay", "50"];
        args.extend_from_slice(keys);
        self.xdotool(&args);
    }

    /// Whether any visible window is titled `title` right now.
    pub fn has_window(&self, title: &str) -> bool {
        let pattern = format!("^{}$", regex_escape(title));
        Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", &pattern])
            .env("DISPLAY", &self.name)
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// Gives a window that is closing a moment to go; returns whether it went.
pub fn window_gone(display: &Display, title: &str) -> bool {
    for _ in 0..50 {
        if !display.has_window(title) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100)); // polling an X server that sends no "closed" event we can await
    }
    false
}
