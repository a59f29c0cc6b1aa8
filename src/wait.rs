//! Deadlines shared by the presenters and the agent: an optional expiry turned into something a
//! `select!` can wait on.

/// The tokio instant at which a wall-clock time arrives (now, if it has passed).
pub fn instant_of(at: jiff::Timestamp) -> tokio::time::Instant {
    let left = at.duration_since(jiff::Timestamp::now());
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    tokio::time::Instant::now() + left
}

/// Sleeps until `at`; never returns when there is no deadline.
pub async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
