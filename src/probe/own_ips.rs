//! Our own egress addresses, learnt from the judges: one direct request
//! (no proxy) to each judge target, whose answer names the address the
//! judge sees us come from. A sweep learns them at its start, so the
//! exporter refreshes them every sweep; `check` and `sweep --once` learn
//! them once.
//!
//! A failed learn is logged, counted by the caller, and remembered with its
//! reason: checks against that judge then know only the configured
//! `own_ips`, and with none, report the anonymity level as unknown rather
//! than call every proxy elite.

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::dial::{self, Conn, ProxyStream};
use super::judge::{self, OwnView};
use super::{request, tls, CheckOptions, StepError};
use crate::model::{Proxy, ProxyProtocol, Reason};

/// What was learnt of our own addresses, per judge target URL.
#[derive(Debug, Clone, Default)]
pub struct OwnIps {
    by_judge: HashMap<String, Result<Vec<IpAddr>, String>>,
}

impl OwnIps {
    /// Judges whose direct request failed, with why (no credentials).
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_judge.iter().filter_map(|(url, r)| match r {
            Err(e) => Some((url.as_str(), e.as_str())),
            Ok(_) => None,
        })
    }

    /// The addresses learnt from `judge_url`, if its direct request worked.
    pub fn learnt(&self, judge_url: &str) -> Option<&[IpAddr]> {
        match self.by_judge.get(judge_url) {
            Some(Ok(ips)) => Some(ips),
            _ => None,
        }
    }

    /// Our addresses for a check with `opts`: the configured `own_ips` and
    /// what the judge told us, or why they are unknown.
    pub(crate) fn view(&self, opts: &CheckOptions) -> Own {
        match self.by_judge.get(opts.target_url.as_str()) {
            Some(Ok(ips)) => {
                let mut all = opts.own_ips.clone();
                all.extend(ips.iter().filter(|ip| !opts.own_ips.contains(ip)));
                Own::Known(all)
            }
            _ if !opts.own_ips.is_empty() => Own::Known(opts.own_ips.clone()),
            Some(Err(e)) => Own::Unknown(format!(
                "our own IPs are unknown: no own_ips configured, and the direct request to the judge failed: {e}"
            )),
            None => Own::Unknown(
                "our own IPs are unknown: no own_ips configured, and none learnt from the judge"
                    .to_string(),
            ),
        }
    }
}

/// Our addresses as one check knows them (see [`OwnIps::view`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Own {
    /// Configured, learnt, or both.
    Known(Vec<IpAddr>),
    /// Why they are unknown.
    Unknown(String),
}

impl Own {
    pub(crate) fn as_view(&self) -> OwnView<'_> {
        match self {
            Own::Known(ips) => OwnView::Known(ips),
            Own::Unknown(why) => OwnView::Unknown(why),
        }
    }
}

/// Learn our addresses from every judge target among `options` (each URL
/// once, all at once), each request under its options' timeout. Failures
/// are logged here; see [`OwnIps::failures`].
pub async fn learn_own_ips<'a>(options: impl IntoIterator<Item = &'a CheckOptions>) -> OwnIps {
    let mut judges: Vec<&CheckOptions> = Vec::new();
    for o in options {
        if o.judge && !judges.iter().any(|j| j.target_url == o.target_url) {
            judges.push(o);
        }
    }
    let answers = futures_util::future::join_all(judges.iter().map(|o| learn_one(o))).await;
    let mut out = OwnIps::default();
    for (o, r) in judges.iter().zip(answers) {
        let target = redacted_target(o);
        match &r {
            Ok(ips) => {
                tracing::debug!(judge = %target, own_ips = ?ips, "own IPs learnt from the judge")
            }
            Err(e) => tracing::warn!(
                judge = %target,
                error = %e,
                "cannot learn our own IPs from the judge (direct request failed); anonymity against it is decided with the configured own_ips only, or reported unknown"
            ),
        }
        out.by_judge.insert(o.target_url.as_str().to_string(), r);
    }
    out
}

/// The target URL without userinfo, as logs may show it.
fn redacted_target(o: &CheckOptions) -> String {
    let mut u = o.target_url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// One direct request to the judge; the exit IP it reports is ours.
async fn learn_one(opts: &CheckOptions) -> Result<Vec<IpAddr>, String> {
    let mut buf = BytesMut::with_capacity(4096);
    let fetched = tokio::time::timeout(opts.timeout, direct_fetch(opts, &mut buf)).await;
    let status = match fetched {
        Err(_) => return Err(format!("timed out after {} ms", opts.timeout.as_millis())),
        Ok(Err(e)) => return Err(e.into_message()),
        Ok(Ok(status)) => status,
    };
    if !opts.expected_status_codes.contains(&status) {
        return Err(format!("the judge answered status {status}"));
    }
    let answer = judge::parse(&buf).map_err(|why| format!("judge answer not understood: {why}"))?;
    Ok(vec![answer.exit_ip])
}

/// GET the target with no proxy: the probe's own request code over a
/// direct connection. On success `buf` holds the body.
async fn direct_fetch(opts: &CheckOptions, buf: &mut BytesMut) -> Result<u16, StepError> {
    let url = &opts.target_url;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(StepError::new(Reason::Http, "target URL has no host")),
    };
    let https = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let tcp = dial::connect(&host, port).await?;
    let mut conn = if https {
        let tls = tls::handshake(
            &opts.target_tls,
            &host,
            ProxyStream::Plain(tcp),
            "judge",
            |s| crate::secret::cut(&super::printable(s), 512),
        )
        .await?;
        Conn::Tls(Box::new(tls))
    } else {
        Conn::Plain(ProxyStream::Plain(tcp))
    };
    // Origin-form, so the (unused) proxy adds nothing to the request.
    let nobody = Proxy::new(ProxyProtocol::Http, &host, port);
    request::build_request(buf, url, false, &nobody, &opts.headers);
    let written = conn.write_all(buf).await;
    buf.clear();
    written.map_err(|e| dial::io_error(&e, "sending the request"))?;
    conn.flush()
        .await
        .map_err(|e| dial::io_error(&e, "sending the request"))?;
    request::read_first_byte(&mut conn, buf).await?;
    let head = request::read_head(&mut conn, buf, opts.max_header_bytes).await?;
    request::read_body(
        &mut conn,
        buf,
        &head,
        opts.max_body_bytes,
        opts.max_header_bytes,
    )
    .await?;
    Ok(head.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_knows_configured_and_learnt_ips_or_says_why_not() {
        let url = url::Url::parse("http://127.0.0.1:9/").unwrap();
        let mut opts = CheckOptions::new(url).unwrap();
        opts.judge = true;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut own = OwnIps::default();
        assert_eq!(
            own.view(&opts),
            Own::Unknown(
                "our own IPs are unknown: no own_ips configured, and none learnt from the judge"
                    .into()
            )
        );
        own.by_judge.insert(
            opts.target_url.to_string(),
            Err("connection refused".into()),
        );
        assert_eq!(
            own.view(&opts),
            Own::Unknown("our own IPs are unknown: no own_ips configured, and the direct request to the judge failed: connection refused".into())
        );
        assert_eq!(
            own.failures().collect::<Vec<_>>(),
            vec![("http://127.0.0.1:9/", "connection refused")]
        );
        opts.own_ips = vec![ip("192.0.2.1")];
        assert_eq!(own.view(&opts), Own::Known(vec![ip("192.0.2.1")]));
        own.by_judge.insert(
            opts.target_url.to_string(),
            Ok(vec![ip("127.0.0.1"), ip("192.0.2.1")]),
        );
        assert_eq!(
            own.view(&opts),
            Own::Known(vec![ip("192.0.2.1"), ip("127.0.0.1")])
        );
        assert_eq!(
            own.learnt("http://127.0.0.1:9/"),
            Some(&[ip("127.0.0.1"), ip("192.0.2.1")][..])
        );
    }
}
