//! The console presenter: one compact JSON object per line on stdout (the contract in DESIGN.md §2), and
//! answers typed at a prompt or read line by line from a non-terminal stdin.
//!
//! stdout carries only these events so scripts can pipe `herald run` into `jq`; logs go to stderr.
//! stdin is read on a plain thread, started at the first question, so a blocked read never holds up
//! shutdown and a terminal's keys are not consumed while nothing is being asked.

use std::io::{BufRead, IsTerminal, Write};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Delivery;
use crate::message::{Answer, AnsweredBy, Kind};

/// One line of console output. Every key is always present.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event<'a> {
    Shown {
        channel: &'a str,
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        priority: &'static str,
        title: &'a str,
        message: &'a str,
    },
    Answered {
        id: &'a str,
        response: Answer,
        answered_by: &'a str,
    },
    Notice {
        text: &'a str,
    },
}

impl<'a> Event<'a> {
    pub fn shown(d: &'a Delivery) -> Self {
        Event::Shown {
            channel: &d.channel,
            id: &d.note.id,
            kind: d.note.kind.as_str(),
            priority: d.note.priority.as_str(),
            title: &d.note.title,
            message: &d.note.message,
        }
    }
}

/// Writes events to stdout, one whole line under stdout's lock, so lines from several tasks never mix.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printer;

impl Printer {
    pub fn print(&self, event: &Event<'_>) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return; // cannot happen: every field is a string
        };
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            warn!(error = %e, "cannot write to stdout");
        }
    }
}

/// Asks questions on the console.
pub struct ConsoleDialogs {
    printer: Printer,
    stdin: Option<mpsc::UnboundedReceiver<String>>,
    interactive: bool,
    eof: bool,
}

impl ConsoleDialogs {
    pub fn new(printer: Printer) -> Self {
        ConsoleDialogs {
            printer,
            stdin: None,
            interactive: std::io::stdin().is_terminal(),
            eof: false,
        }
    }

    pub async fn ask(
        &mut self,
        d: &Delivery,
        shutdown: &CancellationToken,
    ) -> (Answer, AnsweredBy) {
        self.printer.print(&Event::shown(d));
        if self.eof {
            return (Answer::Undeliverable, AnsweredBy::Herald);
        }
        let expiry = d.note.expires_at.map(crate::wait::instant_of);
        let lines = self.stdin.get_or_insert_with(spawn_stdin_reader);
        loop {
            if self.interactive {
                eprint!("{}", prompt(d));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return (Answer::Dismissed, AnsweredBy::Herald),
                _ = crate::wait::sleep_until_opt(expiry) => return (Answer::Expired, AnsweredBy::Herald),
                line = lines.recv() => {
                    let Some(line) = line else {
                        self.eof = true;
                        warn!(id = %d.note.id, "stdin is closed: nobody can answer questions any more");
                        return (Answer::Undeliverable, AnsweredBy::Herald);
                    };
                    match parse_answer(&line, d.note.kind) {
                        Some(answer) => return (answer, AnsweredBy::User),
                        None => warn!(id = %d.note.id, input = %line.trim(), expected = expected(d.note.kind), "not an answer to this question"),
                    }
                }
            }
        }
    }
}

/// Reads stdin line by line on its own thread (tokio's stdin would keep the runtime alive at exit).
fn spawn_stdin_reader() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("herald-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
        .ok();
    rx
}

/// `ok`, `cancel` or `dismiss`, trimmed, in any case; only buttons the question has.
pub fn parse_answer(line: &str, kind: Kind) -> Option<Answer> {
    let answer = match line.trim().to_ascii_lowercase().as_str() {
        "ok" => Answer::Ok,
        "cancel" => Answer::Cancel,
        "dismiss" | "dismissed" => Answer::Dismissed,
        _ => return None,
    };
    kind.offers(answer).then_some(answer)
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::OkCancel => "ok, cancel or dismiss",
        _ => "ok or dismiss",
    }
}

fn prompt(d: &Delivery) -> String {
    format!(
        "\n[{}] {}\n{}\nAnswer ({}): ",
        d.note.priority.as_str(),
        d.note.title,
        d.note.message,
        expected(d.note.kind)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_trimmed_case_insensitive_and_match_the_buttons() {
        assert_eq!(parse_answer("  OK \n", Kind::Ok), Some(Answer::Ok));
        assert_eq!(parse_answer("Cancel", Kind::OkCancel), Some(Answer::Cancel));
        assert_eq!(parse_answer("cancel", Kind::Ok), None);
        assert_eq!(parse_answer("dismiss", Kind::Ok), Some(Answer::Dismissed));
        assert_eq!(parse_answer("yes", Kind::OkCancel), None);
    }
}
