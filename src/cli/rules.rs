//! `herald rules test` and `herald rules run`: check rules without running the agent.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::{self, Config};
use crate::message;
use crate::rules::{self, Step, Verdict, testing};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the rule tests (*.test.toml) under PATHs [default: the config's packs]
    Test(TestArgs),
    /// Run one message through the config's rules and print what each rule did
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Folders or *.test.toml files
    paths: Vec<PathBuf>,
    /// Agent config: its packs (when no PATH is given), on_error, limits and publish_allow
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Agent config whose rules to run
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// The notification JSON: a file, or - for stdin
    #[arg(long, value_name = "FILE")]
    message: PathBuf,
    /// The channel it arrived on
    #[arg(long, default_value = "notifications")]
    channel: String,
    /// Pretend it is this time (RFC 3339), e.g. 2026-12-04T23:30:00+01:00
    #[arg(long)]
    time: Option<jiff::Timestamp>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Test(args) => test(args),
        Command::Run(args) => run_one(args),
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(&path.unwrap_or_else(config::default_path))?)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let (engine_config, paths) = match (&args.config, args.paths.is_empty()) {
        (None, false) => (default_engine_config(), args.paths),
        (config_path, _) => {
            let config = load_config(config_path.clone())?;
            let paths = if args.paths.is_empty() {
                config.rules.packs.clone()
            } else {
                args.paths
            };
            (rules::engine_config(&config), paths)
        }
    };
    let files = testing::find_tests(&paths);
    if files.is_empty() {
        bail!(
            "no *.test.toml files under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let summary = testing::run(&files, &engine_config, &mut std::io::stdout());
    println!(
        "rules: {} passed, {} failed",
        summary.passed, summary.failed
    );
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Rule tests without a config: defaults, and a host that is the same on every machine.
fn default_engine_config() -> rules::EngineConfig {
    let defaults = config::RulesConfig::default();
    rules::EngineConfig {
        on_error: defaults.on_error,
        budget: defaults.budget,
        memory_limit: defaults.memory_limit,
        publish_allow: defaults.publish_allow_set,
        tz: jiff::tz::TimeZone::UTC,
        host: rules::HostInfo {
            name: "test-host".into(),
            os: "linux".into(),
            groups: Vec::new(),
        },
    }
}

fn run_one(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config)?;
    let mut text = Vec::new();
    if args.message.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("cannot read stdin")?;
    } else {
        text = std::fs::read(&args.message)
            .with_context(|| format!("cannot read {}", args.message.display()))?;
    }
    let note = message::decode(&text, config.agent.max_payload_bytes, message::new_id)
        .context("the message would be rejected before the rules")?;
    let mut engine = rules::load(&config).map_err(|errors| {
        anyhow::anyhow!(
            "rules not loaded:\n  {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    engine.set_time(args.time);
    let p = engine.process(&args.channel, &note, true);
    for (rule, step) in &p.trace {
        let what = match step {
            Step::Skipped => "skipped (channel does not match)".to_owned(),
            Step::Passed => "passed".to_owned(),
            Step::Changed(fields) => format!("changed {}", fields.join(", ")),
            Step::Dropped => "dropped".to_owned(),
            Step::Answered(a) => format!("answered {}", a.as_str()),
            Step::Failed(e) => format!("error: {e}"),
        };
        println!("{rule:<24} {what}");
    }
    for n in &p.effects.notices {
        println!(
            "{:<24} notify {:?} ({})",
            n.rule,
            n.title,
            n.priority.as_str()
        );
    }
    for pb in &p.effects.publishes {
        println!("{:<24} publish {} {}", pb.rule, pb.channel, pb.payload);
    }
    let outcome = match &p.verdict {
        Verdict::Show { note, route } => format!(
            "show via {} {}",
            route.map_or("default route", |r| r.as_str()),
            serde_json::json!({"title": note.title, "message": note.message, "type": note.kind.as_str(), "priority": note.priority.as_str()})
        ),
        Verdict::Drop { rule } => format!("drop (by {rule})"),
        Verdict::Answer { rule, answer } => format!("answer {} (by {rule})", answer.as_str()),
    };
    println!("outcome: {outcome}");
    Ok(ExitCode::SUCCESS)
}
