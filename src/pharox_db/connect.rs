//! Connections to pharox's database, shared by the inventory source and the
//! result writer: the URL is resolved again on every connect (so a rotated
//! password in `url_file`/`url_env` is picked up without a restart), and TLS
//! trusts what the probe trusts ([`crate::tls_roots`]).
//!
//! Every exchange has a deadline (docs/postgres.md "Deadlines"): the server
//! is told `statement_timeout` and `lock_timeout` in the startup packet, and
//! the client bounds the whole connect (TCP, TLS, startup, authentication)
//! and each query with `operation_timeout`, since a server that accepts and
//! never answers is invisible to the server-side settings.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::error::redact;
use super::{Config, Error, Operation, PgTls, Stats};

/// Opens connections to the database; shared by the source and the sink.
#[derive(Clone)]
pub(crate) struct Connector {
    cfg: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    stats: Arc<Stats>,
}

impl Connector {
    pub(crate) fn new(cfg: &Config) -> Result<Connector, Error> {
        cfg.validate()?;
        let (_, _, url_tls) = cfg.resolve_url()?;
        let tls = if cfg.tls == PgTls::Require || url_tls == PgTls::Require {
            Some(make_tls(cfg)?)
        } else {
            None
        };
        let c = Connector {
            cfg: cfg.clone(),
            tls,
            stats: Arc::new(Stats::default()),
        };
        c.driver_config()?;
        Ok(c)
    }

    /// Count deadlines hit in `stats` (shared with the writer and the
    /// source, read by the storage collector).
    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Connector {
        self.stats = stats;
        self
    }

    /// The client-side bound on one exchange (`operation_timeout`).
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.cfg.operation_timeout
    }

    /// Log and count a deadline hit while doing `what`; the returned error
    /// says what, where (host and port only) and after how long.
    pub(crate) fn timed_out(&self, op: Operation, what: &str, detail: Option<&Error>) -> Error {
        self.stats.timeout(op);
        let host = self.host();
        let message = match detail {
            Some(e) => format!("{what} on {host}: {e}"),
            None if op == Operation::Write => {
                format!("{what} on {host}: did not finish within the client deadline")
            }
            None => format!(
                "{what} on {host}: the server did not answer within operation_timeout ({:?})",
                self.cfg.operation_timeout
            ),
        };
        tracing::warn!(
            operation = op.as_str(),
            what,
            host = %host,
            error = %message,
            "postgres deadline exceeded"
        );
        Error::Timeout(message)
    }

    /// `host:port` of the server, for logs: never the user or password.
    pub(crate) fn host(&self) -> String {
        let Ok(config) = self.driver_config() else {
            return "(unresolved)".into();
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => redact(&format!("{h}:{port}")),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => format!("{}:{port}", p.display()),
            None => format!("localhost:{port}"),
        }
    }

    /// The driver's config, from the URL as it is now: `url_file` and
    /// `url_env` are read again on every (re)connect, so a rotated password
    /// is picked up without a restart.
    fn driver_config(&self) -> Result<tokio_postgres::Config, Error> {
        let (url, _, url_tls) = self.cfg.resolve_url()?;
        let mut config = tokio_postgres::Config::from_str(url.expose())
            .map_err(|e| Error::Url(redact(&e.to_string())))?;
        if config.get_application_name().is_none() {
            config.application_name("pharox-exporter");
        }
        // The TCP connect alone; the whole connect is bounded in `connect`.
        let op = self.cfg.operation_timeout;
        if config.get_connect_timeout().is_none_or(|t| *t > op) {
            config.connect_timeout(op);
        }
        // Sent in the startup packet, so they hold for every statement of the
        // session, the first included. Settings already in the URL's
        // `options` stay; ours come last and win.
        let ms = |d: Duration| d.as_millis().max(1);
        let ours = format!(
            "-c statement_timeout={} -c lock_timeout={}",
            ms(self.cfg.statement_timeout),
            ms(self.cfg.lock_timeout)
        );
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {ours}"),
            _ => ours,
        };
        config.options(&options);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if self.tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        } else if url_tls == PgTls::Require {
            return Err(Error::Config(
                "the URL now asks for sslmode=require: restart to enable TLS".into(),
            ));
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(config)
    }

    /// Connect once, within `operation_timeout` (TCP, TLS, startup and
    /// authentication together); the connection's I/O runs on its own task
    /// until the client is dropped or the server goes away.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        match tokio::time::timeout(self.cfg.operation_timeout, self.connect_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out(Operation::Connect, "connect", None)),
        }
    }

    async fn connect_unbounded(&self) -> Result<Client, Error> {
        let config = self.driver_config()?;
        let server = server_name(&config);
        let to_err = |e: tokio_postgres::Error| Error::connect_to(&server, &e);
        match &self.tls {
            None => {
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(to_err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %redact(&e.to_string()), "postgres connection closed");
                    }
                });
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = config.connect(tls.clone()).await.map_err(to_err)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %redact(&e.to_string()), "postgres connection closed");
                    }
                });
                Ok(client)
            }
        }
    }
}

/// Where a connection goes, for errors: `host:port` (each, when the URL
/// lists several), the database and the user. Never the password, which
/// the driver's config keeps apart.
fn server_name(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    let mut s = if hosts.is_empty() {
        "localhost".to_string()
    } else {
        hosts.join(",")
    };
    let mut what = Vec::new();
    if let Some(db) = config.get_dbname() {
        what.push(format!("database {db}"));
    }
    if let Some(user) = config.get_user() {
        what.push(format!("user {user}"));
    }
    if !what.is_empty() {
        s.push_str(&format!(" ({})", what.join(", ")));
    }
    s
}

fn make_tls(cfg: &Config) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    // The same trust rules as the probe's: an unusable tls_ca_file is an error.
    let roots = crate::tls_roots::root_store(cfg.tls_ca_file.as_deref())
        .map_err(|e| Error::Config(format!("tls_ca_file: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

/// One connection, opened lazily and reopened after a failure; calls are
/// serialised on it, which is plenty for a few queries per sweep.
pub(crate) struct Session {
    connector: Connector,
    client: Mutex<Option<Client>>,
}

impl Session {
    /// A session for `connector`; does not connect yet (the first query does).
    pub(crate) fn new(connector: Connector) -> Session {
        Session {
            connector,
            client: Mutex::new(None),
        }
    }

    /// Connect now, if not connected yet.
    pub(crate) async fn connect(&self) -> Result<(), Error> {
        let mut guard = self.client.lock().await;
        *guard = Some(self.connector.connect().await?);
        Ok(())
    }

    /// Count deadlines in `stats`.
    pub(crate) fn with_stats(self, stats: Arc<Stats>) -> Session {
        Session {
            connector: self.connector.with_stats(stats),
            client: self.client,
        }
    }

    /// Run one query (`what` names it in logs), reconnecting once if the
    /// connection died since the last call. The whole call, connecting
    /// included, ends within `operation_timeout`; a server-side
    /// `statement_timeout` or `lock_timeout` ends it sooner. Either way it is
    /// logged and counted, and the connection is dropped, since the
    /// server may still be running the statement on it.
    pub(crate) async fn query(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let mut guard = self.client.lock().await;
        let bound = self.connector.operation_timeout();
        let result = tokio::time::timeout(
            bound,
            Self::query_on(&mut guard, &self.connector, sql, params),
        )
        .await;
        match result {
            Ok(Ok(rows)) => Ok(rows),
            // A connect deadline was logged and counted where it happened.
            Ok(Err(e @ Error::Timeout(_))) if guard.is_none() => Err(e),
            Ok(Err(e @ Error::Timeout(_))) => {
                *guard = None;
                Err(self.connector.timed_out(Operation::Read, what, Some(&e)))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                *guard = None;
                Err(self.connector.timed_out(Operation::Read, what, None))
            }
        }
    }

    async fn query_on(
        guard: &mut Option<Client>,
        connector: &Connector,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        for attempt in 0..2 {
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = None;
                *guard = Some(connector.connect().await?);
            }
            let Some(client) = guard.as_ref() else {
                continue;
            };
            match client.query(sql, params).await {
                Ok(rows) => return Ok(rows),
                // A connection that died since the last call: reconnect once.
                Err(e) if attempt == 0 && client.is_closed() => {
                    tracing::debug!(error = %Error::query(&e), "postgres connection lost, reconnecting");
                    *guard = None;
                }
                Err(e) => return Err(Error::query(&e)),
            }
        }
        Err(Error::Connect("connection lost twice in a row".into()))
    }
}
