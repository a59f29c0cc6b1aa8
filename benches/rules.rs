//! Per-message cost of the rule pipeline: decoding, the fixed cost with no rules, each example pack alone, all five
//! together, and how long a runaway rule takes to be stopped. Run with `cargo bench --bench rules`.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use herald::config::OnError;
use herald::message::{self, Notification};
use herald::rules::{Engine, EngineConfig, HostInfo, rule_files};

const PACKS: [&str; 5] = [
    "auto-answer",
    "quiet-hours",
    "noisy-channels",
    "storm-dedup",
    "priority-routing",
];

fn config(budget: Duration) -> EngineConfig {
    EngineConfig {
        on_error: OnError::Pass,
        budget,
        memory_limit: 32 << 20,
        publish_allow: herald::config::globs_for(&["herald:*".to_owned()]).unwrap(),
        tz: jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap(),
        host: HostInfo {
            name: "bench".into(),
            os: "linux".into(),
            groups: vec![],
        },
    }
}

fn pack(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/packs")
        .join(name)
}

/// A realistic ~120-byte notification; titles vary so de-duplication does not short-circuit.
fn payload(i: u64) -> String {
    format!(
        r#"{{"id":"{i}","title":"disk 91% full on db-{i}","message":"/var/lib/postgresql","priority":"high","type":"Simple"}}"#
    )
}

fn note(i: u64) -> Notification {
    message::decode(
        payload(i).as_bytes(),
        message::DEFAULT_MAX_PAYLOAD,
        String::new,
    )
    .unwrap()
}

/// An engine with `packs`, its clock pinned to a weekday afternoon so quiet hours let messages pass.
fn engine(packs: &[&str]) -> Engine {
    let dirs: Vec<PathBuf> = packs.iter().map(|p| pack(p)).collect();
    let engine = Engine::load(
        config(Duration::from_millis(50)),
        &rule_files(&dirs).unwrap(),
    )
    .unwrap();
    engine.set_time(Some("2026-12-04T14:00:00+01:00".parse().unwrap()));
    engine
}

fn bench(c: &mut Criterion) {
    let body = payload(7);
    c.bench_function("decode", |b| {
        b.iter(|| {
            message::decode(
                body.as_bytes(),
                message::DEFAULT_MAX_PAYLOAD,
                message::new_id,
            )
            .unwrap()
        })
    });

    let mut group = c.benchmark_group("rules per message");
    // No rules: building msg, running the (empty) driver and reading msg back — the fixed cost.
    let mut none = engine(&[]);
    let n = note(7);
    group.bench_function("no rules", |b| {
        b.iter(|| none.process("alerts:db", &n, false))
    });
    for p in PACKS {
        let mut e = engine(&[p]);
        let mut i = 0;
        group.bench_function(p, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    note(i)
                },
                |n| e.process("alerts:db", &n, false),
                BatchSize::SmallInput,
            )
        });
    }
    let mut all = engine(&PACKS);
    let mut i = 0;
    group.bench_function("all five packs", |b| {
        b.iter_batched(
            || {
                i += 1;
                note(i)
            },
            |n| all.process("alerts:db", &n, false),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut runaway = c.benchmark_group("runaway rule");
    runaway.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("loop.luau"),
        "return { on_message = function(msg) while true do pcall(function() while true do end end) end end }",
    )
    .unwrap();
    let files = rule_files(&[dir.path().to_owned()]).unwrap();
    for budget_ms in [10, 50] {
        let mut e = Engine::load(config(Duration::from_millis(budget_ms)), &files).unwrap();
        let n = note(1);
        runaway.bench_function(format!("stopped, budget {budget_ms} ms"), |b| {
            b.iter(|| e.process("c", &n, false))
        });
    }
    runaway.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
