//! Presence: every running agent keeps a key `herald:agent:<host>` alive (TTL 30 s, refreshed every
//! 10 s) describing itself, so an admin can list who is listening (`herald agents`) and a publisher
//! can name the live agents that never received a message (`herald publish --track`).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Key prefix of presence keys.
pub const PREFIX: &str = "herald:agent:";
const TTL: Duration = Duration::from_secs(30);
const REFRESH: Duration = Duration::from_secs(10);

/// What an agent says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentInfo {
    pub hostname: String,
    pub version: String,
    pub os: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    pub started: String,
}

/// Keeps this agent's presence key alive until shutdown, then deletes it.
pub async fn run(url: String, info: AgentInfo, shutdown: CancellationToken) {
    let key = format!("{PREFIX}{}", info.hostname);
    let body = serde_json::to_string(&info).expect("serialisable");
    let mut conn: Option<MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = refresh(&url, &mut conn, &key, &body).await {
                    conn = None;
                    debug!(error = %e, "presence not refreshed");
                }
            }
        }
    }
    if let Some(c) = conn.as_mut() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(c).await;
    }
}

async fn refresh(
    url: &str,
    conn: &mut Option<MultiplexedConnection>,
    key: &str,
    body: &str,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(
            crate::connect::client(url)?
                .get_multiplexed_async_connection()
                .await?,
        );
    }
    let c = conn.as_mut().expect("connected above");
    redis::cmd("SET")
        .arg(key)
        .arg(body)
        .arg("EX")
        .arg(TTL.as_secs())
        .query_async(c)
        .await
}

/// Every live agent, sorted by host name.
pub async fn live_agents(conn: &mut MultiplexedConnection) -> redis::RedisResult<Vec<AgentInfo>> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut agents = Vec::new();
    for key in keys {
        let body: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
        if let Some(info) = body.and_then(|b| serde_json::from_str::<AgentInfo>(&b).ok()) {
            agents.push(info);
        }
    }
    agents.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(agents)
}
