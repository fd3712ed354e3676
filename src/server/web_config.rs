//! `--web.config.file`: the web configuration file of Prometheus'
//! exporter-toolkit (TLS, basic auth, response headers), read the way
//! Prometheus and its exporters read it, so one file serves them all.
//!
//! The file and every file it names are checked for changes on each new
//! connection (a `stat` each, on the blocking pool): a rotated certificate
//! is presented by the next connection, without a restart. A file that is
//! broken at start is an error naming the file and the field; one broken
//! later is logged once and the last good configuration stays in force.
//!
//! TLS is rustls: TLS 1.2 and 1.3 only, with rustls' cipher suites and
//! curves. Names Go accepts that rustls does not implement are refused with
//! the list of what is supported, rather than silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hyper::header::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;

/// A web config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a file it names) could not be read.
    #[error("web config {}: cannot read {}: {source}", file.display(), what.display())]
    Read {
        /// The web config file.
        file: PathBuf,
        /// The file that could not be read (the config itself, or a certificate).
        what: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A field has a value that cannot be used.
    #[error("web config {}: {field}: {message}", file.display())]
    Invalid {
        /// The web config file.
        file: PathBuf,
        /// The field, dotted (`tls_server_config.client_auth_type`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

// The file as written. No Debug: it holds password hashes and maybe a key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    tls_server_config: Option<TlsSpec>,
    #[serde(default)]
    http_server_config: Option<HttpSpec>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsSpec {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    // HTTP/2 is not served (HTTP/1.1 only): accepted so a shared file loads.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// What one version of the file says, ready to use.
pub(crate) struct WebSettings {
    /// TLS, when `tls_server_config` names a certificate.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// User name -> bcrypt hash; empty means no authentication.
    pub(crate) users: Arc<BTreeMap<String, String>>,
    /// Headers added to every response.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl WebSettings {
    /// Plain HTTP, no authentication, no extra headers: no `--web.config.file`.
    pub(crate) fn open() -> WebSettings {
        WebSettings {
            tls: None,
            users: Arc::new(BTreeMap::new()),
            headers: Vec::new(),
        }
    }
}

/// Modification time, size and inode of each file a version depends on:
/// a change in any of them means "read again".
type Stamp = Vec<Option<(SystemTime, u64, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

struct Loaded {
    settings: Arc<WebSettings>,
    /// The config file, then every file it names.
    files: Vec<PathBuf>,
    stamp: Stamp,
    /// The stamp of the last version that failed, so it is logged once.
    failed: Option<Stamp>,
}

/// The web config file and its last good version.
pub(crate) struct WebConfigFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl WebConfigFile {
    /// Read and check the file (blocking I/O; done once at start).
    pub(crate) fn load(path: &Path) -> Result<WebConfigFile, WebConfigError> {
        let (settings, files) = read(path)?;
        let st = stamp(&files);
        Ok(WebConfigFile {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                settings: Arc::new(settings),
                files,
                stamp: st,
                failed: None,
            }),
        })
    }

    /// The settings for a new connection: re-read when the file or a file
    /// it names changed; on error, log once and keep the last good ones.
    /// Blocking (`stat`s, and reads on change): call on the blocking pool.
    pub(crate) fn current(&self) -> Arc<WebSettings> {
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&l.files);
        if now == l.stamp || l.failed.as_ref() == Some(&now) {
            return l.settings.clone();
        }
        match read(&self.path) {
            Ok((settings, files)) => {
                tracing::info!(file = %self.path.display(), "web config reloaded");
                l.stamp = stamp(&files);
                l.files = files;
                l.settings = Arc::new(settings);
                l.failed = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "web config not reloaded; keeping the last good one");
                l.failed = Some(now);
            }
        }
        l.settings.clone()
    }
}

/// Parse and build one version of the file; also returns the files it
/// depends on (itself first).
fn read(path: &Path) -> Result<(WebSettings, Vec<PathBuf>), WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        file: path.to_path_buf(),
        what: path.to_path_buf(),
        source,
    })?;
    let invalid = |field: &str, message: String| WebConfigError::Invalid {
        file: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let spec: FileSpec = if text.trim().is_empty() {
        FileSpec::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| invalid("yaml", e.to_string()))?
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];
    let tls = match spec.tls_server_config {
        Some(t) => tls_config(t, dir, &mut files, &|what: &Path, source| {
            WebConfigError::Read {
                file: path.to_path_buf(),
                what: what.to_path_buf(),
                source,
            }
        })
        .map_err(|e| match e {
            Built::Io(e) => e,
            Built::Invalid(field, message) => invalid(&field, message),
        })?,
        None => None,
    };
    let users = spec.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if user.contains(':') {
            return Err(invalid(
                "basic_auth_users",
                format!("user name {user:?} contains ':'"),
            ));
        }
        hash.parse::<bcrypt::HashParts>().map_err(|_| {
            invalid(
                &format!("basic_auth_users.{user}"),
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".into(),
            )
        })?;
    }
    let headers = headers(spec.http_server_config.and_then(|h| h.headers))
        .map_err(|(field, message)| invalid(&field, message))?;
    Ok((
        WebSettings {
            tls: tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c))),
            users: Arc::new(users),
            headers,
        },
        files,
    ))
}

/// The headers exporter-toolkit allows, with the values it allows.
const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

fn headers(
    spec: Option<BTreeMap<String, String>>,
) -> Result<Vec<(HeaderName, HeaderValue)>, (String, String)> {
    let mut out = Vec::new();
    for (name, value) in spec.unwrap_or_default() {
        let field = format!("http_server_config.headers.{name}");
        let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
            return Err((
                field,
                format!(
                    "this header cannot be configured; allowed: {}",
                    HEADERS.join(", ")
                ),
            ));
        };
        if value.is_empty() {
            continue; // "Unset if blank."
        }
        let lower = value.to_ascii_lowercase();
        let ok = match *known {
            "X-Frame-Options" => lower == "deny" || lower == "sameorigin",
            "X-Content-Type-Options" => lower == "nosniff",
            _ => true,
        };
        if !ok {
            return Err((field, format!("invalid value {value:?}")));
        }
        let v = HeaderValue::from_str(&value).map_err(|e| (field.clone(), e.to_string()))?;
        let n = HeaderName::from_bytes(known.as_bytes()).map_err(|e| (field, e.to_string()))?;
        out.push((n, v));
    }
    Ok(out)
}

enum Built {
    Io(WebConfigError),
    Invalid(String, String),
}

fn bad(field: &str, message: impl Into<String>) -> Built {
    Built::Invalid(format!("tls_server_config.{field}"), message.into())
}

/// Inline PEM, or the named file (relative to the config's directory).
fn pem(
    inline: Option<String>,
    file: Option<PathBuf>,
    names: (&str, &str),
    dir: &Path,
    files: &mut Vec<PathBuf>,
    io: &dyn Fn(&Path, std::io::Error) -> WebConfigError,
) -> Result<Option<Vec<u8>>, Built> {
    match (
        inline.filter(|s| !s.is_empty()),
        file.filter(|p| !p.as_os_str().is_empty()),
    ) {
        (Some(_), Some(_)) => Err(bad(
            names.1,
            format!("set either {} or {}, not both", names.0, names.1),
        )),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(p)) => {
            let p = dir.join(p);
            files.push(p.clone());
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| Built::Io(io(&p, e)))
        }
        (None, None) => Ok(None),
    }
}

fn tls_config(
    t: TlsSpec,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    io: &dyn Fn(&Path, std::io::Error) -> WebConfigError,
) -> Result<Option<ServerConfig>, Built> {
    // Every field is checked, with or without a certificate: a typo must
    // not pass because TLS happens to be off.
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(bad(
            "client_allowed_sans",
            "not supported by pharox-exporter; use a client CA of its own for the scrapers",
        ));
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = t.cipher_suites.filter(|c| !c.is_empty()) {
        provider.cipher_suites = cipher_suites(&names, &provider.cipher_suites)?;
    }
    if let Some(names) = t.curve_preferences.filter(|c| !c.is_empty()) {
        provider.kx_groups = curves(&names, &provider.kx_groups)?;
    }
    let versions = versions(t.min_version.as_deref(), t.max_version.as_deref())?;
    let provider = Arc::new(provider);
    let ca = pem(
        t.client_ca,
        t.client_ca_file,
        ("client_ca", "client_ca_file"),
        dir,
        files,
        io,
    )?;
    let verifier = client_verifier(t.client_auth_type.as_deref(), ca, &provider)?;

    let cert = pem(t.cert, t.cert_file, ("cert", "cert_file"), dir, files, io)?;
    let key = pem(t.key, t.key_file, ("key", "key_file"), dir, files, io)?;
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None), // as exporter-toolkit: no certificate, no TLS
        (Some(_), None) => return Err(bad("key_file", "missing (cert_file is set)")),
        (None, Some(_)) => return Err(bad("cert_file", "missing (key_file is set)")),
        (Some(c), Some(k)) => (c, k),
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cert_file", format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("cert_file", "no certificate in it"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| bad("key_file", format!("not PEM: {e}")))?
        .ok_or_else(|| bad("key_file", "no private key in it"))?;

    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| bad("cipher_suites", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("key_file", format!("does not go with cert_file: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok(Some(cfg))
}

fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, Built> {
    // TLS 1.0 and 1.1 are not implemented by rustls: a minimum below 1.2 is
    // 1.2, which is what such a file gets from any current client anyway.
    let rank = |field: &str, v: &str| match v {
        "TLS10" | "TLS11" | "TLS12" => Ok(2),
        "TLS13" => Ok(3),
        other => Err(bad(
            field,
            format!("unknown TLS version {other:?} (TLS10, TLS11, TLS12, TLS13)"),
        )),
    };
    let lo = min
        .map(|v| rank("min_version", v))
        .transpose()?
        .unwrap_or(2);
    let hi = max
        .map(|v| rank("max_version", v))
        .transpose()?
        .unwrap_or(3);
    if max == Some("TLS10") || max == Some("TLS11") {
        return Err(bad("max_version", "TLS 1.0 and 1.1 are not supported"));
    }
    if lo > hi {
        return Err(bad("min_version", "is above max_version"));
    }
    Ok([(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(r, _)| (lo..=hi).contains(r))
        .map(|(_, v)| v)
        .collect())
}

/// TLS 1.2 suites by their Go names (TLS 1.3 suites are not configurable,
/// in Go as here), in the order given.
fn cipher_suites(
    names: &[String],
    available: &[SupportedCipherSuite],
) -> Result<Vec<SupportedCipherSuite>, Built> {
    let known: [(&str, CipherSuite); 6] = [
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        let bare = name
            .strip_suffix("_SHA256")
            .filter(|b| b.ends_with("POLY1305"));
        let Some((_, id)) = known
            .iter()
            .find(|(n, _)| *n == name.as_str() || Some(*n) == bare)
        else {
            let list: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
            return Err(bad(
                "cipher_suites",
                format!("{name:?} is not supported; supported: {}", list.join(", ")),
            ));
        };
        if let Some(s) = available.iter().find(|s| s.suite() == *id) {
            if !out.iter().any(|o| o.suite() == *id) {
                out.push(*s);
            }
        }
    }
    // TLS 1.3 keeps its own suites.
    out.extend(
        available
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))),
    );
    Ok(out)
}

fn curves(
    names: &[String],
    available: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, Built> {
    let known = [
        ("CurveP256", NamedGroup::secp256r1),
        ("CurveP384", NamedGroup::secp384r1),
        ("X25519", NamedGroup::X25519),
    ];
    let mut out: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
    for name in names {
        let group = known
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, g)| *g)
            .ok_or_else(|| {
                bad(
                    "curve_preferences",
                    format!("{name:?} is not supported; supported: CurveP256, CurveP384, X25519"),
                )
            })?;
        if let Some(g) = available.iter().find(|g| g.name() == group) {
            out.push(*g);
        }
    }
    Ok(out)
}

fn client_verifier(
    kind: Option<&str>,
    ca: Option<Vec<u8>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Built> {
    let kind = kind.filter(|k| !k.is_empty()).unwrap_or("NoClientCert");
    let roots = |ca: Option<Vec<u8>>| -> Result<Arc<RootCertStore>, Built> {
        let Some(pem) = ca else {
            return Err(bad(
                "client_ca_file",
                format!("required by client_auth_type {kind}"),
            ));
        };
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| bad("client_ca_file", format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad("client_ca_file", e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("client_ca_file", "no certificate in it"));
        }
        Ok(Arc::new(roots))
    };
    let webpki = |roots: Arc<RootCertStore>, optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build().map_err(|e| bad("client_ca_file", e.to_string()))
    };
    match kind {
        "NoClientCert" => {
            if ca.is_some() {
                // exporter-toolkit refuses this too: a CA that nothing checks.
                return Err(bad(
                    "client_auth_type",
                    "client_ca_file is set but NoClientCert checks nothing: use RequireAndVerifyClientCert",
                ));
            }
            Ok(WebPkiClientVerifier::no_client_auth())
        }
        "RequestClientCert" => Ok(Arc::new(AnyClientCert::new(false, provider))),
        "RequireAnyClientCert" => Ok(Arc::new(AnyClientCert::new(true, provider))),
        "VerifyClientCertIfGiven" => webpki(roots(ca)?, true),
        "RequireAndVerifyClientCert" => webpki(roots(ca)?, false),
        other => Err(bad(
            "client_auth_type",
            format!(
                "unknown {other:?} (NoClientCert, RequestClientCert, RequireAnyClientCert, \
                 VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ),
        )),
    }
}

/// Go's `RequestClientCert` / `RequireAnyClientCert`: ask for a certificate
/// and accept any (the handshake signature still proves the key).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    fn new(mandatory: bool, provider: &CryptoProvider) -> Self {
        AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, text: &str) -> Result<WebConfigFile, WebConfigError> {
        let p = dir.join("web.yml");
        std::fs::write(&p, text).unwrap();
        WebConfigFile::load(&p)
    }

    fn err(dir: &Path, text: &str) -> String {
        match load(dir, text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let dir = tempfile::tempdir().unwrap();
        let w = load(dir.path(), "").unwrap().current();
        assert!(w.tls.is_none() && w.users.is_empty() && w.headers.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let e = err(dir.path(), "basic_auth_users:\n  alice: plain-text\n");
        assert!(
            e.contains("web.yml") && e.contains("basic_auth_users.alice"),
            "{e}"
        );
        assert!(!e.contains("plain-text"), "the secret is not echoed: {e}");
        let e = err(
            dir.path(),
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: k.pem\n",
        );
        assert!(e.contains("cannot read") && e.contains("nope.pem"), "{e}");
        let e = err(dir.path(), "tls_servr_config: {}\n");
        assert!(e.contains("yaml") && e.contains("tls_servr_config"), "{e}");
        let e = err(
            dir.path(),
            "http_server_config:\n  headers:\n    Server: x\n",
        );
        assert!(e.contains("http_server_config.headers.Server"), "{e}");
        let e = err(
            dir.path(),
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        );
        assert!(e.contains("invalid value"), "{e}");
        let e = err(dir.path(), "rate_limit:\n  burst: 2\n");
        assert!(e.contains("rate_limit"), "{e}");
    }

    #[test]
    fn tls_fields_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pharox_testkit::pki::TestPki::generate();
        pki.write_pem(dir.path());
        let base = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let ok = load(dir.path(), base).unwrap().current();
        assert!(ok.tls.is_some());
        for (extra, field) in [
            ("  client_auth_type: Sometimes\n", "client_auth_type"),
            (
                "  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            ("  client_ca_file: ca.pem\n", "client_auth_type"),
            ("  min_version: TLS14\n", "min_version"),
            (
                "  min_version: TLS13\n  max_version: TLS12\n",
                "min_version",
            ),
            (
                "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
                "cipher_suites",
            ),
            ("  curve_preferences: [CurveP521]\n", "curve_preferences"),
            ("  client_allowed_sans: [a]\n", "client_allowed_sans"),
        ] {
            let e = err(dir.path(), &format!("{base}{extra}"));
            assert!(
                e.contains(&format!("tls_server_config.{field}")),
                "{extra}: {e}"
            );
        }
        let full = format!(
            "{base}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             \x20 min_version: TLS12\n  max_version: TLS13\n\
             \x20 cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]\n\
             \x20 curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n"
        );
        let w = load(dir.path(), &full).unwrap().current();
        assert!(w.tls.is_some());
        assert_eq!(w.headers.len(), 2);
        // A key that does not match the certificate.
        let other = pharox_testkit::pki::TestPki::generate();
        std::fs::write(dir.path().join("key.pem"), &other.key_pem).unwrap();
        let e = err(dir.path(), base);
        assert!(e.contains("tls_server_config.key_file"), "{e}");
    }

    #[test]
    fn a_broken_change_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let w = load(
            dir.path(),
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        )
        .unwrap();
        assert_eq!(w.current().users.len(), 1);
        std::fs::write(dir.path().join("web.yml"), "basic_auth_users: [\n").unwrap();
        assert_eq!(w.current().users.len(), 1, "broken: last good kept");
        std::fs::write(
            dir.path().join("web.yml"),
            format!("basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n"),
        )
        .unwrap();
        assert_eq!(w.current().users.len(), 2, "fixed: picked up");
    }
}
