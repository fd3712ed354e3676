//! `/probe?target=<proxy-url>` or `/probe?id=<inventory id>`:
//! blackbox_exporter-style multi-target probe.
//! One check, answered with its own registry. Only proxies in the inventory
//! are probed unless the config allows arbitrary targets, so the exporter
//! cannot be turned into an open prober of the world.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::http::request::Parts;
use hyper::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::routes::{encode, query_param, respond, wants_openmetrics, Resp, PLAIN};
use super::AppState;
use crate::model::{CheckResult, Phase, Proxy, ProxyStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
    phase: String,
}

type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Handle `GET /probe`.
pub(super) async fn probe(req: &Parts, app: &Arc<AppState>) -> Resp {
    let proxy = match target(req, app).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    // Each probe dials the proxy with its stored credentials: capped overall
    // and one at a time per proxy, so /probe cannot be used to hammer one.
    let _slot = match app.requests.probe(&proxy.id) {
        Ok(s) => s,
        Err(super::limits::ProbeBusy::Full) => {
            return super::routes::busy(app, "probe_concurrency")
        }
        Err(super::limits::ProbeBusy::SameProxy) => {
            app.metrics.http_rejected("probe_same_proxy");
            return respond(
                StatusCode::TOO_MANY_REQUESTS,
                PLAIN,
                "a probe of this proxy is already running\n",
            );
        }
    };
    let cfg = app.current_config();
    let opts = cfg.options.for_proxy(&proxy).clone();
    // A judge target: learn our own IPs first (one direct request), as a
    // sweep does, so the probe's anonymity level matches the sweep's.
    let own = if opts.judge {
        crate::probe::learn_own_ips([&*opts]).await
    } else {
        crate::probe::OwnIps::default()
    };
    let started = Instant::now();
    let r = crate::probe::check_with(&proxy, &opts, &own).await;
    let reg = registry(&r, started.elapsed());
    let om = wants_openmetrics(req);
    encode(&reg, om)
}

/// The proxy to check: the inventory's own entry (its credentials, labels
/// and options), or the URL as given when arbitrary targets are allowed.
///
/// `?id=` names an entry exactly. `?target=URL` matches every part the URL
/// gives, the password included (compared, never printed): a URL without
/// credentials stands for the entry at that address, so a scrape config
/// need not carry passwords, but when several entries there differ in
/// their credentials the answer is 409 and the caller must say which.
async fn target(req: &Parts, app: &Arc<AppState>) -> Result<Arc<Proxy>, Resp> {
    let bad = |msg: &str| respond(StatusCode::BAD_REQUEST, PLAIN, msg.to_string());
    const ASK: &str = "?target=<proxy-url> or ?id=<inventory id>";
    let (target, id) = (query_param(req, "target"), query_param(req, "id"));
    let target = match (target, id) {
        (Some(_), Some(_)) => return Err(bad(&format!("give {ASK}, not both\n"))),
        (None, None) => return Err(bad(&format!("missing {ASK}\n"))),
        (None, Some(id)) => {
            return match app.state.get(&id) {
                Some(s) => Ok(s.proxy),
                None => Err(respond(
                    StatusCode::NOT_FOUND,
                    PLAIN,
                    format!("no proxy with id {id:?} in the inventory\n"),
                )),
            }
        }
        (Some(t), None) => t,
    };
    let asked = match crate::inventory::parse_proxy_url(&target) {
        Ok(p) => p,
        Err(e) => return Err(bad(&format!("bad target: {e}\n"))),
    };
    // A scan, not an index: /probe is rare and ad hoc, while an index would
    // cost ~100 bytes per proxy, every proxy, all the time.
    let matches = {
        let (app, asked) = (app.clone(), asked.clone());
        tokio::task::spawn_blocking(move || {
            let mut found: Vec<Arc<Proxy>> = Vec::new();
            app.state.for_each(|s| {
                if answers_for(&s.proxy, &asked) {
                    found.push(s.proxy.clone());
                }
            });
            found.sort_by(|a, b| a.id.cmp(&b.id));
            found
        })
        .await
        .unwrap_or_default()
    };
    let same_credentials = matches
        .windows(2)
        .all(|w| w[0].username == w[1].username && w[0].password == w[1].password);
    match matches.first() {
        Some(p) if same_credentials => Ok(p.clone()),
        Some(_) => {
            let ids: Vec<&str> = matches.iter().take(10).map(|p| p.id.as_str()).collect();
            Err(respond(
                StatusCode::CONFLICT,
                PLAIN,
                format!(
                    "target {} matches {} inventory entries with different credentials (ids: {}); \
                     probe one with ?id=<inventory id>\n",
                    asked.redacted_url(),
                    matches.len(),
                    ids.join(", ")
                ),
            ))
        }
        None if app.current_config().web.allow_arbitrary_probe_targets => Ok(Arc::new(asked)),
        None => Err(respond(
            StatusCode::FORBIDDEN,
            PLAIN,
            format!(
                "target {} is not in the inventory; set web.allow_arbitrary_probe_targets: true to probe any proxy\n",
                asked.redacted_url()
            ),
        )),
    }
}

/// True when inventory entry `p` is what the URL `asked` names: same
/// protocol, host and port, and the same username and password where the
/// URL gives them.
fn answers_for(p: &Proxy, asked: &Proxy) -> bool {
    p.protocol == asked.protocol
        && p.port == asked.port
        && p.host.eq_ignore_ascii_case(&asked.host)
        && (asked.username.is_none() || p.username == asked.username)
        && (asked.password.is_none() || p.password == asked.password)
}

/// The one-shot registry of a probe.
fn registry(r: &CheckResult, elapsed: Duration) -> Registry {
    let mut reg = Registry::default();
    let success = Gauge::<i64>::default();
    success.set(r.is_up() as i64);
    reg.register("probe_success", "1 if the proxy is ACTIVE or SLOW", success);
    let dur = F64Gauge::default();
    dur.set(elapsed.as_secs_f64());
    reg.register_with_unit(
        "probe_duration",
        "Wall time of the probe",
        Unit::Seconds,
        dur,
    );
    let lat = F64Gauge::default();
    lat.set(r.latency_ms as f64 / 1000.0);
    reg.register_with_unit(
        "probe_proxy_latency",
        "Latency of the check as classified (timeout when INACTIVE)",
        Unit::Seconds,
        lat,
    );
    let status = Family::<StatusLabel, Gauge>::default();
    for s in [
        ProxyStatus::Active,
        ProxyStatus::Slow,
        ProxyStatus::Inactive,
    ] {
        status
            .get_or_create(&StatusLabel {
                status: s.as_str().into(),
            })
            .set((r.status == s) as i64);
    }
    reg.register(
        "probe_proxy_status",
        "1 for the status of the check",
        status,
    );
    let attempts = Gauge::<i64>::default();
    attempts.set(r.attempts as i64);
    reg.register("probe_attempts", "Attempts the check used", attempts);
    let code = Gauge::<i64>::default();
    code.set(r.status_code.map(i64::from).unwrap_or(0));
    reg.register(
        "probe_http_status_code",
        "HTTP status of the last response (0 if none)",
        code,
    );
    register_phases_and_reason(&mut reg, r);
    reg
}

fn register_phases_and_reason(reg: &mut Registry, r: &CheckResult) {
    let phases = Family::<PhaseLabel, F64Gauge>::default();
    for ph in Phase::ALL {
        if let Some(ms) = r.phases.get(ph) {
            phases
                .get_or_create(&PhaseLabel {
                    phase: ph.as_str().into(),
                })
                .set(ms / 1000.0);
        }
    }
    reg.register_with_unit(
        "probe_phase_duration",
        "Time spent in each phase",
        Unit::Seconds,
        phases,
    );
    if let Some(reason) = r.reason {
        let fam = Family::<ReasonLabel, Gauge>::default();
        fam.get_or_create(&ReasonLabel {
            reason: reason.as_str().into(),
            phase: r.phase.map(Phase::as_str).unwrap_or("").into(),
        })
        .set(1);
        reg.register(
            "probe_failure",
            "1 with the failure reason and phase of the last attempt",
            fam,
        );
    }
}
