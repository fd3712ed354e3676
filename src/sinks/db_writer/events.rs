//! Health changes of leased proxies: pharox consumers holding a lease on a
//! proxy want to know when it goes bad under them. Each change is logged on
//! the `pharox_exporter::events` target and, when configured, POSTed as JSON
//! to a webhook by a task of its own, so a slow receiver never holds up the
//! writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::model::ProxyStatus;
use crate::pharox_db::{Error, Stats};
use crate::secret::{redact_credentials, Userinfo};

/// Events waiting for the webhook; beyond this they are counted and dropped.
const EVENT_QUEUE: usize = 1024;

/// A health change of a leased proxy, as logged and POSTed to the webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct LeasedHealthEvent {
    /// Always `leased_proxy_health_changed`.
    pub event: String,
    /// pharox proxy UUID.
    pub proxy_id: String,
    /// Pool name.
    pub pool: String,
    /// Status of the proxy row before this result.
    pub status_before: ProxyStatus,
    /// Status found by the check.
    pub status_after: ProxyStatus,
    /// `proxy.current_leases` at write time.
    pub current_leases: i32,
    /// True when an active, unexpired lease exists.
    pub active_lease: bool,
    /// Failure reason when the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Latency recorded with the result.
    pub latency_ms: i32,
    /// When the check finished.
    pub checked_at: DateTime<Utc>,
}

/// Start the webhook sender for `url`; events go through the returned channel.
pub(super) fn spawn_webhook(
    url: &str,
    stats: Arc<Stats>,
) -> Result<mpsc::Sender<LeasedHealthEvent>, Error> {
    let url =
        url::Url::parse(url).map_err(|e| Error::Config(format!("leased_event_webhook: {e}")))?;
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::Config(format!("webhook client: {e}")))?;
    tokio::spawn(run_webhook(client, url, rx, stats));
    Ok(tx)
}

/// Log one event and hand it to the webhook sender without waiting.
pub(super) fn emit_event(
    stats: &Stats,
    tx: Option<&mpsc::Sender<LeasedHealthEvent>>,
    ev: LeasedHealthEvent,
) {
    stats.leased_events.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        target: "pharox_exporter::events",
        event = "leased_proxy_health_changed",
        proxy_id = %ev.proxy_id,
        pool = %ev.pool,
        status_before = %ev.status_before,
        status_after = %ev.status_after,
        current_leases = ev.current_leases,
        active_lease = ev.active_lease,
        reason = ev.reason.as_deref().unwrap_or(""),
        "leased proxy changed health"
    );
    if let Some(tx) = tx {
        if tx.try_send(ev).is_err() {
            stats.webhook_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run_webhook(
    client: reqwest::Client,
    url: url::Url,
    mut rx: mpsc::Receiver<LeasedHealthEvent>,
    stats: Arc<Stats>,
) {
    while let Some(ev) = rx.recv().await {
        let ok = match client.post(url.clone()).json(&ev).send().await {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "leased event webhook refused the event"
                );
                false
            }
            Err(e) => {
                // reqwest errors can name the URL; strip any credentials in it.
                tracing::warn!(error = %redact_credentials(&e.without_url().to_string(), Userinfo::Drop), "leased event webhook failed");
                false
            }
        };
        if !ok {
            stats.webhook_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
