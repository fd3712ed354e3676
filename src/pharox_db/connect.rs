//! Connections to pharox's database, shared by the inventory source and the
//! result writer: the URL is resolved again on every connect (so a rotated
//! password in `url_file`/`url_env` is picked up without a restart), and TLS
//! trusts what the probe trusts ([`crate::tls_roots`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::error::redact;
use super::{Config, Error, PgTls};

/// Opens connections to the database; shared by the source and the sink.
#[derive(Clone)]
pub(crate) struct Connector {
    cfg: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
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
        };
        c.driver_config()?;
        Ok(c)
    }

    /// The driver's config, from the URL as it is now: `url_file` and
    /// `url_env` are read again on every (re)connect, so a rotated password
    /// is picked up without a restart.
    fn driver_config(&self) -> Result<tokio_postgres::Config, Error> {
        let (url, _, url_tls) = self.cfg.resolve_url()?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| Error::Url(redact(&e.to_string())))?;
        if config.get_application_name().is_none() {
            config.application_name("pharox-exporter");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
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

    /// Connect once; the connection's I/O runs on its own task until the
    /// client is dropped or the server goes away.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
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

    /// Run one query, reconnecting once if the connection died since the last call.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Error> {
        let mut guard = self.client.lock().await;
        for attempt in 0..2 {
            if guard.as_ref().is_none_or(|c| c.is_closed()) {
                *guard = Some(self.connector.connect().await?);
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
