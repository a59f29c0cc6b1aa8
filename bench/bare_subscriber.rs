//! Benchmark (a), the limit: a bare redis-rs subscriber that only counts messages. It exits once it
//! has seen `count` messages and prints how many it got.
//!
//! Usage: bare-subscriber URL CHANNEL COUNT

use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> redis::RedisResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, channel, count): (&str, &str, u64) =
        (&args[1], &args[2], args[3].parse().expect("COUNT"));
    let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    println!("ready");
    let mut stream = pubsub.on_message();
    let mut seen = 0u64;
    while stream.next().await.is_some() {
        seen += 1;
        if seen == count {
            break;
        }
    }
    println!("{seen}");
    Ok(())
}
