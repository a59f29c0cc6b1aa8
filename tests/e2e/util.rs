//! Test helpers: a real `redis-server` per test on a free port, and a real `herald` process whose
//! stdout and stderr lines can be awaited. Everything is killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// How long any single expected event may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `redis-server` of the test's own.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    /// With TLS: the TLS port and its server arguments (the plain `port` stays open for the test).
    pub tls_port: Option<u16>,
    tls_args: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(false)
    }

    /// A Redis that writes every command to its append-only file before answering.
    pub fn start_durable() -> Redis {
        Redis::start_with(true)
    }

    fn start_with(durable: bool) -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut redis = Redis {
            child: None,
            port,
            dir,
            durable,
            tls_port: None,
            tls_args: Vec::new(),
        };
        redis.start_again();
        redis
    }

    /// A Redis that also listens for TLS, with `server.pem`/`server.key` from `certs`, trusting
    /// `ca.pem` for client certificates; `require_client_cert` sets `tls-auth-clients yes`.
    pub fn start_tls(certs: &Path, require_client_cert: bool) -> Redis {
        let tls_port = free_port();
        let file = |name: &str| certs.join(name).display().to_string();
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            durable: false,
            tls_port: Some(tls_port),
            tls_args: vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                if require_client_cert { "yes" } else { "no" }.into(),
            ],
        };
        redis.start_again();
        redis
    }

    /// The `rediss://` URL of a TLS Redis.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}/",
            self.tls_port.expect("started with TLS")
        )
    }

    /// Starts the server (again) on the same port, waiting for "Ready to accept connections".
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(["--logfile", ""])
            .args(&self.tls_args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let lines = spawn_line_reader(stdout);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("Ready to accept connections") => break,
                Ok(_) => continue,
                Err(_) => panic!("redis-server on port {} did not start", self.port),
            }
        }
        // Keep draining its output so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// XADDs a notification to `stream` (field `payload`), as `herald publish --stream` does.
    pub fn xadd(&self, stream: &str, payload: &str) -> String {
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("payload")
            .arg(payload)
            .query(&mut self.conn())
            .unwrap()
    }

    /// Entries of `group` on `stream` delivered but not acknowledged.
    pub fn pending(&self, stream: &str, group: &str) -> i64 {
        let summary: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .query(&mut self.conn())
            .unwrap();
        summary.0
    }

    pub fn publish(&self, channel: &str, payload: impl redis::ToRedisArgs) -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query(&mut self.conn())
            .unwrap()
    }

    /// A subscriber on `channel`, subscribed before this returns.
    pub fn subscribe(&self, channel: &str) -> Subscriber {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        redis::cmd("SUBSCRIBE")
            .arg(channel)
            .exec(&mut conn)
            .unwrap();
        Subscriber { conn }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain SUBSCRIBE connection for reading replies.
pub struct Subscriber {
    conn: redis::Connection,
}

impl Subscriber {
    /// The next message's payload, within `PATIENCE`.
    pub fn next(&mut self) -> String {
        loop {
            let value: redis::Value = self.conn.recv_response().expect("a message in time");
            if let redis::Value::Array(parts) | redis::Value::Push { data: parts, .. } = value
                && parts.len() == 3
                && matches!(&parts[0], redis::Value::BulkString(k) if k == b"message")
            {
                return redis::from_redis_value::<String>(parts[2].clone()).unwrap();
            }
        }
    }

    pub fn next_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.next()).unwrap()
    }
}

/// A running `herald run`.
pub struct Agent {
    child: Child,
    /// How it was started, for `restart`.
    url: Option<String>,
    desk: Desk,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    /// Every stderr line seen so far.
    pub logs: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `herald run` with `config` (TOML) against `redis`, and waits until it is subscribed.
    pub fn start(redis: &Redis, config: &str) -> Agent {
        let mut agent = Agent::spawn(redis, config);
        agent.expect_log("subscribed");
        agent
    }

    /// Starts `herald run` without waiting for anything.
    pub fn spawn(redis: &Redis, config: &str) -> Agent {
        Agent::spawn_with_url(Some(&redis.url()), config)
    }

    /// Starts `herald run` with `--url` when given, else with the config's own `[redis] url`.
    pub fn spawn_with_url(url: Option<&str>, config: &str) -> Agent {
        Agent::spawn_in(url, config, &Desk::none())
    }

    /// Starts `herald run` in the desktop session `desk` describes.
    pub fn spawn_in(url: Option<&str>, config: &str, desk: &Desk) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("herald.toml"), config).unwrap();
        let (child, stdin, stdout, stderr) = launch(dir.path(), url, desk);
        Agent {
            child,
            url: url.map(str::to_owned),
            desk: desk.clone(),
            stdin,
            stdout,
            stderr,
            seen: Vec::new(),
            logs: Vec::new(),
            dir,
        }
    }

    /// Kills the agent with SIGKILL, as a crash would, and starts it again on the same config and
    /// state dir. What it printed before stays in `seen` and `logs`.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
        let (child, stdin, stdout, stderr) =
            launch(self.dir.path(), self.url.as_deref(), &self.desk);
        (self.child, self.stdin, self.stdout, self.stderr) = (child, stdin, stdout, stderr);
    }
}

type Launched = (
    Child,
    Option<ChildStdin>,
    mpsc::Receiver<String>,
    mpsc::Receiver<String>,
);

/// Starts `herald run` on the config in `dir`.
fn launch(dir: &Path, url: Option<&str>, desk: &Desk) -> Launched {
    let mut cmd = herald(dir);
    cmd.args(["run", "--config"]).arg(dir.join("herald.toml"));
    if let Some(url) = url {
        cmd.args(["--url", url]);
    }
    desk.apply(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stdout = spawn_line_reader(child.stdout.take().unwrap());
    let stderr = spawn_line_reader(child.stderr.take().unwrap());
    (child, stdin, stdout, stderr)
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the agent process, in bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("herald.toml")
    }

    /// Saves a new config the way an editor does: in place, or written aside and renamed over.
    pub fn save_config(&self, text: &str, how: Save) {
        save(&self.config_path(), text, how);
    }

    /// The next stdout line for which `pred` holds (earlier lines are kept in `seen`).
    pub fn expect_line(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no stdout line {what} within {PATIENCE:?}; saw {:#?}\nlogs: {:#?}",
                    self.seen, self.logs
                )
            });
            self.seen.push(line.clone());
            let json: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            if pred(&json) {
                return json;
            }
        }
    }

    /// Waits for the `shown` event of the notification titled `title`.
    pub fn expect_shown(&mut self, title: &str) -> serde_json::Value {
        self.expect_line(&format!("shown {title:?}"), |j| {
            j["event"] == "shown" && j["title"] == title
        })
    }

    /// The next stderr line containing `needle`.
    pub fn expect_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.stderr.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no log line with {needle:?} within {PATIENCE:?}; saw {:#?}",
                    self.logs
                )
            });
            self.logs.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the log line of a successful reload to `generation`.
    pub fn expect_reload(&mut self, generation: u64) -> String {
        self.expect_log(&format!("reloaded generation={generation} "))
    }

    pub fn stderr_lines(&mut self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Adds the stdout lines printed since the last look to `seen`, without waiting.
    pub fn catch_up(&mut self) {
        self.seen.extend(self.stdout.try_iter());
    }

    /// Types `line` at the agent's stdin.
    pub fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin: nobody is left to answer.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.wait()
    }

    /// SIGTERM, then `None` if the agent has not exited within `limit` (it is killed then).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.drain();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().unwrap();
        self.drain();
        status
    }

    /// After the process has exited: everything it wrote, up to the end of its pipes (the reader
    /// threads may still be forwarding the last lines when the process is already gone).
    fn drain(&mut self) {
        self.seen.extend(self.stdout.iter());
        self.logs.extend(self.stderr.iter());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The desktop an agent sees: a session bus, a display, and the `PATH` it finds helpers on.
#[derive(Debug, Clone, Default)]
pub struct Desk {
    pub bus: Option<String>,
    pub display: Option<String>,
    pub path: Option<String>,
}

impl Desk {
    /// No bus and no display: a headless machine.
    pub fn none() -> Desk {
        Desk::default()
    }

    fn apply(&self, cmd: &mut Command) {
        for (var, value) in [
            ("DBUS_SESSION_BUS_ADDRESS", &self.bus),
            ("DISPLAY", &self.display),
            ("PATH", &self.path),
        ] {
            match value {
                Some(v) => cmd.env(var, v),
                None if var == "PATH" => cmd,
                None => cmd.env_remove(var),
            };
        }
        cmd.env_remove("WAYLAND_DISPLAY");
    }
}

/// How an editor saves a file.
#[derive(Debug, Clone, Copy)]
pub enum Save {
    /// Truncate and write the file itself.
    InPlace,
    /// Write a temporary file beside it and rename it over the original (vim, most IDEs).
    Rename,
}

pub fn save(path: &Path, text: &str, how: Save) {
    match how {
        Save::InPlace => std::fs::write(path, text).unwrap(),
        Save::Rename => {
            let tmp = path.with_extension("tmp~");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

/// A `herald` command with its own runtime dir (lock files) and no inherited Redis URL.
pub fn herald(runtime_dir: &Path) -> Command {
    let mut cmd = Command::new(HERALD);
    cmd.env("XDG_RUNTIME_DIR", runtime_dir)
        .env("XDG_STATE_HOME", runtime_dir)
        .env_remove("HERALD_REDIS_URL")
        .env("HERALD_LOG", "info");
    cmd
}

/// A minimal config subscribed to `subs` (TOML `[[subscribe]]` bodies such as `channel = "a"`).
pub fn config(hostname: &str, subs: &[&str]) -> String {
    let mut c =
        format!("[agent]\nhostname = \"{hostname}\"\n\n[presenter]\nkind = \"console\"\n\n");
    for s in subs {
        c.push_str(&format!("[[subscribe]]\n{s}\n\n"));
    }
    c
}

/// Pipelines one PUBLISH to `channel` per notification titled `flood {i}`, `i` in `numbers`, each
/// with the `extra` fields: a flood as fast as Redis takes it.
pub fn publish_flood(
    conn: &mut redis::Connection,
    channel: &str,
    numbers: std::ops::Range<usize>,
    extra: &serde_json::Value,
) {
    let mut pipe = redis::pipe();
    for i in numbers {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(note(&format!("flood {i}"), extra.clone()))
            .ignore();
    }
    pipe.exec(conn).unwrap();
}

/// A notification payload.
pub fn note(title: &str, extra: serde_json::Value) -> String {
    let mut v = serde_json::json!({"title": title, "message": format!("body of {title}")});
    if let serde_json::Value::Object(extra) = extra {
        v.as_object_mut().unwrap().extend(extra);
    }
    v.to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_line_reader(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
