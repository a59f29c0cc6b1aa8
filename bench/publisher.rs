//! Benchmark publisher. `flood`: COUNT distinct ~120-byte notifications, pipelined as fast as Redis
//! takes them, then one sentinel question (critical, so every example rule lets it through) whose
//! answer marks the end. `paced`: RATE a second for SECONDS, each stamped with its send time.
//!
//! `rate`: RATE a second for SECONDS in pipelined batches every 10 ms (for rates no round trip per
//! message can reach), then the sentinel.
//!
//! Usage: publisher URL CHANNEL flood COUNT | paced RATE SECONDS | rate RATE SECONDS

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PRIORITIES: [&str; 4] = ["low", "normal", "high", "normal"];
const SENTINEL: &str = r#"{"id":"sentinel","title":"bench sentinel","message":"end","type":"OK","priority":"critical","reply_channel":"replies:bench"}"#;

fn notification(i: u64, message: &str) -> String {
    format!(
        r#"{{"id":"b{i}","title":"disk {}% full on db-{i}","message":"{message}","priority":"{}","type":"Simple"}}"#,
        50 + i % 50,
        PRIORITIES[(i % 4) as usize]
    )
}

fn main() -> redis::RedisResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, channel, mode) = (&args[1], &args[2], args[3].as_str());
    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
    match mode {
        "flood" => {
            let count: u64 = args[4].parse().expect("COUNT");
            let mut pipe = redis::pipe();
            for i in 0..count {
                pipe.cmd("PUBLISH")
                    .arg(channel)
                    .arg(notification(i, "/var/lib/postgresql"))
                    .ignore();
                if (i + 1).is_multiple_of(1000) {
                    pipe.exec(&mut conn)?;
                    pipe.clear();
                }
            }
            if !count.is_multiple_of(1000) {
                pipe.exec(&mut conn)?;
            }
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(SENTINEL)
                .exec(&mut conn)?;
        }
        "rate" => {
            let rate: u64 = args[4].parse().expect("RATE");
            let seconds: u64 = args[5].parse().expect("SECONDS");
            let per_batch = (rate / 100).max(1);
            let start = Instant::now();
            let mut i = 0;
            for batch in 0..seconds * 100 {
                let due = start + Duration::from_millis(batch * 10);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut pipe = redis::pipe();
                for _ in 0..per_batch {
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(notification(i, "/var/lib/postgresql"))
                        .ignore();
                    i += 1;
                }
                pipe.exec(&mut conn)?;
            }
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(SENTINEL)
                .exec(&mut conn)?;
            println!("{i}");
        }
        "paced" => {
            let rate: u64 = args[4].parse().expect("RATE");
            let seconds: u64 = args[5].parse().expect("SECONDS");
            let start = Instant::now();
            for i in 0..rate * seconds {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(notification(i, &format!("sent_at={now}")))
                    .exec(&mut conn)?;
            }
        }
        other => panic!("unknown mode {other}"),
    }
    Ok(())
}
