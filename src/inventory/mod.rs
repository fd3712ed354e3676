//! Inventory sources: where the proxies to sweep come from.
//!
//! A file source reads one of four formats and yields [`Proxy`] values. A
//! malformed entry never aborts a read: it becomes a [`RowError`] naming the
//! file, line and field, is reported, and the rest is checked. Credentials
//! never appear in those errors: every echo of a user's line goes through
//! [`crate::secret::redact_credentials`].

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashTable;
use serde::Deserialize;

mod depth;
pub(crate) mod pharox_db;
#[cfg(test)]
mod proptests;
pub(crate) mod shard;
mod source;

pub(crate) use depth::{check_depth, MAX_DEPTH};

pub use shard::Shard;
pub(crate) use source::FileStamp;
pub use source::{InventoryRead, ReadMode, Source, SourceError, SourceSpec};

use crate::model::{parse_country, Proxy, ProxyProtocol, DEFAULT_POOL, DEFAULT_PROVIDER};
use crate::secret::{cut, redact_credentials, redact_entry, Secret, Userinfo, QUOTE_IT};
use crate::text::{Interner, Text};

/// File formats of an inventory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// By extension (`.csv`, `.json`, `.yaml`/`.yml`), else by content.
    #[default]
    Auto,
    /// One proxy URL per line; `#` starts a comment.
    Lines,
    /// CSV with a header row naming its columns.
    Csv,
    /// A JSON list of URLs or objects.
    Json,
    /// A YAML list of URLs or objects.
    Yaml,
}

/// The whole inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// I/O.
    #[error("{file}: cannot read inventory: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file as a whole is not in its format (e.g. not a YAML list).
    #[error("{file}:{line}: {message}")]
    Format {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is empty (nothing but whitespace): most likely being
    /// written, so it is not taken as "no proxies". Write a comment line
    /// (or `[]` for JSON/YAML) to mean an empty inventory.
    #[error("{file}: inventory is empty (a file being written?); it was not read")]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// Not a regular file (a FIFO, a device, a directory): reading it could
    /// block forever or never end.
    #[error("{file}: inventory is not a regular file ({kind}); it was not read")]
    NotRegular {
        /// The file.
        file: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// Reading did not finish in time (a hung network file system).
    #[error("{file}: reading the inventory did not finish within {seconds}s; it was abandoned")]
    Timeout {
        /// The file.
        file: PathBuf,
        /// The bound.
        seconds: u64,
    },
}

impl InventoryError {
    /// The `kind` label of `pharox_exporter_inventory_errors_total` for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            InventoryError::Read { .. } | InventoryError::Format { .. } => "read",
            InventoryError::Empty { .. } => "empty",
            InventoryError::NotRegular { .. } => "not_regular",
            InventoryError::Timeout { .. } => "timeout",
        }
    }
}

/// One entry skipped as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the entry.
    pub line: usize,
    /// The offending field (`url`, `port`, ...).
    pub field: String,
    /// What is wrong; never contains a password.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}; entry skipped",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// One entry ignored because an earlier entry has the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the ignored entry.
    pub line: usize,
    /// 1-based line of the entry kept.
    pub first_line: usize,
    /// The id they share (an inventory id or one derived without the password).
    pub id: String,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: duplicate id {:?} (first at line {}); entry ignored",
            self.file.display(),
            self.line,
            self.id,
            self.first_line
        )
    }
}

/// Duplicates reported by line, at most; the count is always exact.
pub(crate) const DUPLICATES_LISTED: usize = 10;

/// What a read produced: the good proxies and the skipped entries.
#[derive(Default)]
pub(crate) struct Loaded {
    /// Valid proxies, duplicates (same id) removed, first one kept. Each
    /// in its `Arc` from the start, as the sweep and the state hold them:
    /// wrapping them after the read had both copies alive at once.
    pub proxies: Vec<Arc<Proxy>>,
    /// Malformed entries, skipped.
    pub errors: Vec<RowError>,
    /// Entries dropped because their id was already seen.
    pub duplicates: usize,
    /// The first [`DUPLICATES_LISTED`] of them, with their lines.
    pub first_duplicates: Vec<Duplicate>,
    /// Valid entries left to other replicas by sharding.
    pub other_shards: usize,
    shard: Shard,
    /// Each kept proxy's position in `proxies` and line, found by the hash
    /// of its id (the id itself is read from the proxy, not copied): to
    /// drop duplicates and name the first of a pair.
    seen: HashTable<(u32, u32)>,
    hasher: RandomState,
    /// Shares the values proxies repeat (pool, provider, user, labels).
    shared: Shared,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("proxies", &self.proxies)
            .field("errors", &self.errors)
            .field("duplicates", &self.duplicates)
            .field("first_duplicates", &self.first_duplicates)
            .field("other_shards", &self.other_shards)
            .finish_non_exhaustive()
    }
}

/// One allocation for a value that many proxies of a read hold: the
/// strings and labels through an [`Interner`], passwords here (a provider
/// often gives every proxy the same one).
#[derive(Default)]
pub(crate) struct Shared {
    texts: Interner,
    passwords: HashSet<Secret>,
}

impl Shared {
    /// `p` with its repeated values replaced by the shared ones. The id
    /// and host are left: they differ from proxy to proxy.
    pub(crate) fn share(&mut self, mut p: Proxy) -> Proxy {
        p.pool = self.texts.text(p.pool);
        p.provider = self.texts.text(p.provider);
        p.username = p.username.map(|u| self.texts.text(u));
        p.country = p.country.map(|c| self.texts.text(c));
        p.labels = self.texts.labels(p.labels);
        p.password = p.password.map(|pw| match self.passwords.get(&pw) {
            Some(known) => known.clone(),
            None => {
                self.passwords.insert(pw.clone());
                pw
            }
        });
        p
    }
}

impl Loaded {
    /// Make room for about `n` proxies (a line count: sharding keeps a
    /// share of them), so the list is not copied as it grows.
    fn reserve(&mut self, n: usize) {
        let n = n / self.shard.count.max(1) as usize + 1;
        self.proxies.reserve(n);
        self.seen.reserve(n, |_| 0);
    }

    /// Keep a parsed entry, or record why it was skipped.
    fn push(&mut self, path: &Path, line: usize, entry: Result<Proxy, (String, String)>) {
        match entry {
            // Dropping other shards' entries while parsing keeps a replica's
            // peak memory proportional to its share, not to the whole file.
            Ok(p) if !self.shard.owns(&p.id) => self.other_shards += 1,
            Ok(p) => {
                let hash = self.hasher.hash_one(&*p.id);
                let proxies = &self.proxies;
                match self
                    .seen
                    .find(hash, |&(i, _)| proxies[i as usize].id == p.id)
                {
                    Some(&(_, first_line)) => {
                        self.duplicates += 1;
                        if self.first_duplicates.len() < DUPLICATES_LISTED {
                            self.first_duplicates.push(Duplicate {
                                file: path.to_path_buf(),
                                line,
                                first_line: first_line as usize,
                                id: p.id.to_string(),
                            });
                        }
                    }
                    None => {
                        // Lines and positions fit in u32: a file of 4 billion
                        // lines is not read into memory.
                        let i = self.proxies.len() as u32;
                        let hasher = &self.hasher;
                        self.seen.insert_unique(hash, (i, line as u32), |&(j, _)| {
                            hasher.hash_one(&*proxies[j as usize].id)
                        });
                        self.proxies.push(Arc::new(self.shared.share(p)));
                    }
                }
            }
            Err((field, message)) => self.errors.push(RowError {
                file: path.to_path_buf(),
                line,
                field,
                message,
            }),
        }
    }
}

/// Read an inventory file, keeping only the entries `shard` owns
/// ([`Shard::default`] owns every entry). Blocking: callers on the runtime
/// go through `Source::read`, which runs it on its own thread.
///
/// Only a regular file is read (a FIFO would block until a writer comes, a
/// device might never end); an empty one is an error, not "no proxies".
pub(crate) fn load_file(
    path: &Path,
    format: Format,
    shard: Shard,
) -> Result<Loaded, InventoryError> {
    use std::io::Read;
    let io = |source| InventoryError::Read {
        file: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        // Opening a FIFO for reading blocks until a writer opens it;
        // non-blocking, the open returns and fstat says what it is.
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = opts.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(InventoryError::NotRegular {
            file: path.to_path_buf(),
            kind: file_kind(&meta),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io)?;
    parse_bytes(path, &bytes, format, shard)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Parse a file's bytes. Lines and CSV are decoded line by line, so a
/// non-UTF-8 byte rejects its line only; JSON and YAML are documents, so
/// there it rejects the file (naming the line).
pub(crate) fn parse_bytes(
    path: &Path,
    bytes: &[u8],
    format: Format,
    shard: Shard,
) -> Result<Loaded, InventoryError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InventoryError::Empty {
            file: path.to_path_buf(),
        });
    }
    let (text, bad_lines) = match std::str::from_utf8(bytes) {
        Ok(t) => (std::borrow::Cow::Borrowed(t), Vec::new()),
        Err(_) => {
            let mut text = String::with_capacity(bytes.len());
            let mut bad = Vec::new();
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                // A bad line becomes an empty one: line numbers stay right.
                match std::str::from_utf8(line) {
                    Ok(l) => text.push_str(l),
                    Err(_) => bad.push(i + 1),
                }
            }
            (std::borrow::Cow::Owned(text), bad)
        }
    };
    let format = match format {
        Format::Auto => sniff(path, &text),
        f => f,
    };
    if let (Some(&line), Format::Json | Format::Yaml) = (bad_lines.first(), format) {
        return Err(InventoryError::Format {
            file: path.to_path_buf(),
            line,
            message: "not valid UTF-8".into(),
        });
    }
    let mut loaded = parse(path, &text, format, shard)?;
    for line in bad_lines {
        loaded.errors.push(RowError {
            file: path.to_path_buf(),
            line,
            field: "row".into(),
            message: "not valid UTF-8".into(),
        });
    }
    loaded.errors.sort_by_key(|e| e.line);
    Ok(loaded)
}

/// Parse inventory text (the path only names it in errors and picks the
/// format), keeping only the entries `shard` owns.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    format: Format,
    shard: Shard,
) -> Result<Loaded, InventoryError> {
    let format = match format {
        Format::Auto => sniff(path, text),
        f => f,
    };
    let mut out = Loaded {
        shard,
        ..Loaded::default()
    };
    // An empty file (or one of comments only) is an empty inventory in every
    // format, as a CSV with only its header is: "0 proxies", not an error.
    let empty = text
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'));
    if empty {
        return Ok(out);
    }
    match format {
        Format::Lines | Format::Auto => {
            out.reserve(text.bytes().filter(|b| *b == b'\n').count());
            parse_lines(path, text, &mut out)
        }
        Format::Csv => {
            out.reserve(text.bytes().filter(|b| *b == b'\n').count());
            parse_csv(path, text, &mut out)?
        }
        Format::Json | Format::Yaml => parse_list(path, text, format, &mut out)?,
    }
    out.seen = HashTable::new();
    out.shared = Shared::default();
    Ok(out)
}

/// Drop entries whose id was already seen (the first one wins); returns how many.
fn dedup(proxies: &mut Vec<Proxy>) -> usize {
    let mut seen = HashSet::with_capacity(proxies.len());
    let before = proxies.len();
    proxies.retain(|p| seen.insert(p.id.clone()));
    before - proxies.len()
}

fn sniff(path: &Path, text: &str) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => return Format::Csv,
        Some("json") => return Format::Json,
        Some("yaml") | Some("yml") => return Format::Yaml,
        _ => {}
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if first.starts_with('[') {
        Format::Json
    } else if first.starts_with("- ") || first == "-" {
        Format::Yaml
    } else if first.contains(',') && !first.contains("://") {
        Format::Csv
    } else {
        Format::Lines
    }
}

/// Quote a user's line in an error: the password is masked by where it
/// sits in the syntax (first), the line cut to a bound (then); the
/// username stays so the line can be found.
fn redact(s: &str) -> String {
    redact_entry(s)
}

/// What a list line or provider form is told when it does not parse.
const FORMS: &str = "expected scheme://[user:pass@]host:port, user:pass@host:port, \
                     host:port or host:port:user:pass (IPv6 hosts in brackets)";

/// Parse one proxy URL: `scheme://[user[:pass]@]host[:port]`, or the common
/// provider forms (protocol http): `user:pass@host:port`, `host:port` and
/// `host:port:user:pass`, where the password may hold `:` and an IPv6 host
/// is bracketed (`[::1]:8080:user:pass`). User and password are
/// percent-decoded in the URL and `@` forms, taken as written in the list
/// form. Errors quote the entry with its password masked
/// ([`crate::secret::redact_entry`]), never a field that could be one.
pub fn parse_proxy_url(s: &str) -> Result<Proxy, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty proxy URL".into());
    }
    // A URL only when what precedes `://` is a scheme (RFC 3986: a letter,
    // then letters, digits, `+`, `-`, `.`): in `host:port:user:pa://ss` the
    // `://` belongs to the password.
    let is_url = s.find("://").is_some_and(|i| {
        let scheme = &s[..i];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !is_url {
        return parse_provider_form(s);
    }
    let u = url::Url::parse(s).map_err(|e| format!("invalid proxy URL {:?}: {e}", redact(s)))?;
    let protocol: ProxyProtocol = u.scheme().parse()?;
    let host = u
        .host_str()
        .ok_or_else(|| format!("invalid proxy URL {:?}: no host", redact(s)))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = u.port().unwrap_or_else(|| protocol.default_port());
    if port == 0 {
        return Err(format!("invalid port 0 in {:?}", redact(s)));
    }
    let decode = |v: &str| percent_decode(v);
    let user = (!u.username().is_empty()).then(|| decode(u.username()));
    let pass = u.password().map(|p| Secret::new(decode(p)));
    if u.path() != "/" && !u.path().is_empty() {
        return Err(format!(
            "invalid proxy URL {:?}: a proxy URL has no path",
            redact(s)
        ));
    }
    build(protocol, host, port, user, pass).map_err(|m| format!("{m} in {:?}", redact(s)))
}

/// The forms without a scheme, all HTTP proxies. No message quotes a
/// single field: in a line like `user:pass:host:port` (an order some
/// providers use) the "port" is the password.
fn parse_provider_form(s: &str) -> Result<Proxy, String> {
    let bad = || format!("invalid proxy {:?}: {FORMS}", redact(s));
    // The list form when its second field is a port: a password in it may
    // hold `@` (`host:port:user:p@ss`). Else, with an `@`, the URL-like form.
    let (host, port, user, pass) = match split_list(s) {
        Some(list) => list,
        None if s.contains('@') => {
            // user:pass@host:port (curl reads it the same way).
            let at = s.rfind('@').ok_or_else(bad)?;
            let (userinfo, hostport) = (&s[..at], &s[at + 1..]);
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
                None => (percent_decode(userinfo), None),
            };
            let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
            (host, port, Some(user), pass)
        }
        None => {
            let hint = if s.contains("::") {
                " (an IPv6 host goes in brackets: [::1]:8080)"
            } else {
                ""
            };
            return Err(format!(
                "invalid proxy {:?}: no valid port (1..65535) where one was expected{hint}; {FORMS}",
                redact(s)
            ));
        }
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(bad()),
    };
    build(ProxyProtocol::Http, host, port, user, pass.map(Secret::new))
        .map_err(|m| format!("{m} in {:?}", redact(s)))
}

/// `host:port` or `host:port:user:pass` (the password is everything after
/// the third `:`), a bracketed IPv6 host being one field; `None` unless
/// the second field is all digits.
#[allow(clippy::type_complexity)]
fn split_list(s: &str) -> Option<(&str, &str, Option<String>, Option<String>)> {
    let (host, fields) = match s.strip_prefix('[') {
        Some(r) => {
            let (h, after) = r.split_once(']')?;
            (h, after.strip_prefix(':')?)
        }
        None => s.split_once(':')?,
    };
    let mut parts = fields.splitn(3, ':');
    let port = parts.next()?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match (parts.next(), parts.next()) {
        (None, _) if !s.contains('@') => Some((host, port, None, None)),
        (Some(user), Some(pass)) => {
            Some((host, port, Some(user.to_string()), Some(pass.to_string())))
        }
        _ => None,
    }
}

/// `host:port` or `[v6]:port` (IPv6 without brackets in the result).
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    match s.strip_prefix('[') {
        Some(r) => {
            let (h, after) = r.split_once(']')?;
            Some((h, after.strip_prefix(':')?))
        }
        None => s.rsplit_once(':').filter(|(h, _)| !h.contains(':')),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {:?}: expected 1..65535", s.trim())),
        Ok(p) => Ok(p),
    }
}

fn build(
    protocol: ProxyProtocol,
    host: &str,
    port: u16,
    user: Option<String>,
    pass: Option<Secret>,
) -> Result<Proxy, String> {
    let host = host.trim();
    if host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c.is_control() || "/@[]\"'".contains(c))
    {
        // Not quoted: in a misordered line the "host" may be anything.
        return Err("invalid host (empty, or with a space, `/`, `@` or a quote)".into());
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        // `user:password` in a host column, or a mangled IPv6 address.
        return Err("invalid host: a host with `:` must be an IPv6 address".into());
    }
    let mut p = Proxy::new(protocol, host, port);
    p.username = user.filter(|u| !u.is_empty()).map(Text::from);
    p.password = pass;
    if p.username.is_some() {
        p.id = Proxy::derive_id(protocol, p.username.as_deref(), &p.host, port).into();
    }
    Ok(p)
}

/// Said of a bad last line with no newline after it: the usual sign of a
/// file read while it was being written.
const HALF_WRITTEN: &str = "the last line has no newline at the end (a file being written?)";

fn parse_lines(path: &Path, text: &str, out: &mut Loaded) {
    let last = last_line_if_unterminated(text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = parse_proxy_url(line).map_err(|m| {
            if Some(i + 1) == last {
                ("url".to_string(), format!("{m}; {HALF_WRITTEN}"))
            } else {
                ("url".to_string(), m)
            }
        });
        out.push(path, i + 1, entry);
    }
}

/// The 1-based number of the last line when the text does not end with a newline.
fn last_line_if_unterminated(text: &str) -> Option<usize> {
    (!text.is_empty() && !text.ends_with('\n')).then(|| text.split('\n').count())
}

/// One entry of a YAML/JSON list, or one CSV row: either a URL or fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Option<String>,
    url: Option<String>,
    protocol: Option<String>,
    host: Option<String>,
    port: Option<serde_json::Value>,
    username: Option<String>,
    password: Option<Secret>,
    pool: Option<String>,
    provider: Option<String>,
    /// Declared country (ISO 3166-1 alpha-2, any case).
    country: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Entry {
    fn into_proxy(self) -> Result<Proxy, (String, String)> {
        let mut p = if let Some(url) = self.url.as_deref().filter(|u| !u.trim().is_empty()) {
            parse_proxy_url(url).map_err(|m| ("url".to_string(), m))?
        } else {
            let protocol: ProxyProtocol = match self
                .protocol
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                Some(s) => s.parse().map_err(|m| ("protocol".to_string(), m))?,
                None => {
                    return Err((
                        "protocol".into(),
                        "missing (give `url`, or `protocol`, `host` and `port`)".into(),
                    ))
                }
            };
            let host = self
                .host
                .as_deref()
                .map(str::trim)
                .filter(|h| !h.is_empty());
            let host = host.ok_or_else(|| ("host".to_string(), "missing".to_string()))?;
            let port = match &self.port {
                Some(serde_json::Value::Number(n)) => parse_port(&n.to_string()),
                Some(serde_json::Value::String(s)) => parse_port(s),
                Some(other) => Err(format!("invalid port {other}: expected 1..65535")),
                None => Err("missing".into()),
            }
            .map_err(|m| ("port".to_string(), m))?;
            let user = self.username.clone().filter(|u| !u.is_empty());
            let pass = self.password.clone().filter(|p| !p.is_empty());
            build(protocol, host, port, user, pass).map_err(|m| ("host".to_string(), m))?
        };
        if self.url.is_some() {
            if let Some(u) = self.username.filter(|u| !u.is_empty()) {
                p.username = Some(u.into());
            }
            if let Some(pw) = self.password.filter(|p| !p.is_empty()) {
                p.password = Some(pw);
            }
            p.id = Proxy::derive_id(p.protocol, p.username.as_deref(), &p.host, p.port).into();
        }
        if let Some(id) = self.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            p.id = id.into();
        }
        p.pool = self
            .pool
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_POOL)
            .into();
        p.provider = self
            .provider
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_PROVIDER)
            .into();
        p.labels = self.labels.into();
        p.country = match self
            .country
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            Some(c) => Some(
                parse_country(c)
                    .map_err(|m| ("country".to_string(), m))?
                    .into(),
            ),
            None => None,
        };
        Ok(p)
    }
}

const CSV_COLUMNS: [&str; 10] = [
    "id", "url", "protocol", "host", "port", "username", "password", "pool", "provider", "country",
];

/// CSV, one record per line: inventories hold no multi-line fields, and
/// reading line by line means a stray `"` costs its own line only (the csv
/// crate, fed the whole file, reads an unclosed quote to the end of the
/// file and swallows every row after it). A line with an odd number of
/// quotes is reported with its number and skipped.
fn parse_csv(path: &Path, text: &str, out: &mut Loaded) -> Result<(), InventoryError> {
    let fmt_err = |line: usize, message: String| InventoryError::Format {
        file: path.to_path_buf(),
        line,
        message,
    };
    let last = last_line_if_unterminated(text);
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(fmt_err(1, "CSV has no header row".into()));
    };
    let mut csv = CsvLines::new();
    let headers = csv
        .fields(header)
        .map_err(|m| fmt_err(header_line, format!("bad CSV header: {m}")))?;
    let cols: Vec<Option<usize>> = headers
        .iter()
        .map(|h| CSV_COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h)))
        .collect();
    let has = |name: &str| headers.iter().any(|h| h.eq_ignore_ascii_case(name));
    let by_fields = has("protocol") && has("host") && has("port");
    if !(has("url") || by_fields) {
        return Err(fmt_err(
            header_line,
            "CSV header must name `url`, or `protocol`, `host` and `port` (optional: id, username, password, pool, provider, country)"
                .into(),
        ));
    }
    for (line, raw) in lines {
        let rec = match csv.fields(raw) {
            Ok(r) => r,
            Err(m) => {
                out.errors.push(RowError {
                    file: path.to_path_buf(),
                    line,
                    field: "row".into(),
                    message: m,
                });
                continue;
            }
        };
        if Some(line) == last && rec.len() < headers.len() {
            out.errors.push(RowError {
                file: path.to_path_buf(),
                line,
                field: "row".into(),
                message: format!("{} of {} fields; {HALF_WRITTEN}", rec.len(), headers.len()),
            });
            continue;
        }
        let mut e = Entry::default();
        for (i, v) in rec.into_iter().enumerate() {
            let v = Some(v).filter(|s| !s.is_empty());
            match cols.get(i).copied().flatten() {
                Some(0) => e.id = v,
                Some(1) => e.url = v,
                Some(2) => e.protocol = v,
                Some(3) => e.host = v,
                Some(4) => e.port = v.map(serde_json::Value::String),
                Some(5) => e.username = v,
                Some(6) => e.password = v.map(Secret::new),
                Some(7) => e.pool = v,
                Some(8) => e.provider = v,
                Some(9) => e.country = v,
                _ => {}
            }
        }
        out.push(path, line, e.into_proxy());
    }
    Ok(())
}

/// Splits CSV lines into trimmed fields, one line at a time (so a stray
/// quote cannot swallow the rows after it), with one parser and one set of
/// buffers for the whole file: building a parser per line cost a quarter of
/// `sweep --once`'s CPU on a 100k-row inventory.
struct CsvLines {
    rdr: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl CsvLines {
    fn new() -> Self {
        CsvLines {
            rdr: csv_core::Reader::new(),
            out: vec![0; 256],
            ends: vec![0; 16],
        }
    }

    /// The fields of one CSV line, trimmed. The message never quotes the
    /// line (it may hold a password).
    fn fields(&mut self, line: &str) -> Result<Vec<String>, String> {
        if line.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
            return Err(
                "malformed CSV row: unbalanced quote (\"); a quoted field must end on its line"
                    .into(),
            );
        }
        self.rdr.reset();
        let mut input = line.as_bytes();
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (res, nin, o, e) =
                self.rdr
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += o;
            nend += e;
            match res {
                // The line is all there is: an empty input says "end of data".
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => return Ok(Vec::new()),
            }
        }
        let data =
            std::str::from_utf8(&self.out[..nout]).map_err(|_| "malformed CSV row".to_string())?;
        let mut start = 0;
        Ok(self.ends[..nend]
            .iter()
            .map(|&end| {
                let field = data[start..end].trim().to_string();
                start = end;
                field
            })
            .collect())
    }
}

fn parse_list(
    path: &Path,
    text: &str,
    format: Format,
    out: &mut Loaded,
) -> Result<(), InventoryError> {
    let fmt_err = |line: usize, message: String| InventoryError::Format {
        file: path.to_path_buf(),
        line,
        message,
    };
    if let Err(line) = check_depth(text, MAX_DEPTH) {
        return Err(fmt_err(
            line,
            format!("nested more than {MAX_DEPTH} levels deep; refused before parsing"),
        ));
    }
    let items: Vec<serde_json::Value> = match format {
        // Parsed as any value first, then checked to be a list: serde's
        // "invalid type: string \"...\", expected a sequence" would quote a
        // file that is one URL or one `host:port:user:pass` line.
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| fmt_err(e.line(), format!("not a JSON list of proxies: {e}")))?;
            match v {
                serde_json::Value::Array(items) => items,
                other => {
                    return Err(fmt_err(
                        1,
                        format!("not a JSON list of proxies: got {}", kind(&other)),
                    ))
                }
            }
        }
        _ => {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
                fmt_err(
                    e.location().map(|l| l.line()).unwrap_or(0),
                    format!(
                        "not a YAML list of proxies: {}",
                        redact_credentials(&e.to_string(), Userinfo::KeepUsername)
                    ),
                )
            })?;
            let v = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            match v {
                serde_json::Value::Array(items) => items,
                // An empty document is handled above; `~` or a scalar is not a list.
                other => {
                    return Err(fmt_err(
                        1,
                        format!("not a YAML list of proxies: got {}", kind(&other)),
                    ))
                }
            }
        }
    };
    let lines = match format {
        Format::Json => json_item_lines(text),
        _ => yaml_item_lines(text),
    };
    for (i, item) in items.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let entry = match item {
            serde_json::Value::String(s) => Ok(Entry {
                url: Some(s),
                ..Default::default()
            }),
            serde_json::Value::Object(map) => {
                let mut map = map;
                // Numbers and booleans in label maps are fine in YAML; keep them as text.
                if let Some(serde_json::Value::Object(labels)) = map.get_mut("labels") {
                    for v in labels.values_mut() {
                        if !v.is_string() {
                            *v = serde_json::Value::String(v.to_string());
                        }
                    }
                }
                // A number or boolean where text is meant (`pool: 1`) is
                // that text; serde's type error would name the value, not
                // the field.
                for f in [
                    "id", "username", "protocol", "host", "pool", "provider", "country",
                ] {
                    if let Some(v) = map.get_mut(f) {
                        if v.is_number() || v.is_boolean() {
                            *v = serde_json::Value::String(v.to_string());
                        }
                    }
                }
                match map.get("password") {
                    // YAML would not give `password: 0123` back as written:
                    // refused, by kind, never quoting the value.
                    Some(v) if !(v.is_string() || v.is_null()) => {
                        Err(("password".to_string(), format!("{}: {QUOTE_IT}", kind(v))))
                    }
                    _ => serde_json::from_value::<Entry>(serde_json::Value::Object(map)).map_err(
                        |e| {
                            // serde names an unknown field in backticks; a
                            // type error names no field (and may quote a value).
                            let msg = e.to_string();
                            let field = match msg.strip_prefix("unknown field `") {
                                Some(rest) => rest.split('`').next().unwrap_or("entry"),
                                None => "entry",
                            };
                            let msg = if msg.starts_with("invalid type") {
                                "a field has the wrong type (expected text, a number for port, a map for labels)".to_string()
                            } else {
                                redact_credentials(&msg, Userinfo::KeepUsername)
                            };
                            (cut(field, 64), msg)
                        },
                    ),
                }
            }
            other => Err((
                "entry".into(),
                format!("expected a proxy URL or an object, got {}", kind(&other)),
            )),
        };
        out.push(path, line, entry.and_then(Entry::into_proxy));
    }
    Ok(())
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Lines on which the top-level items of a JSON array start.
fn json_item_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut line, mut in_str, mut esc, mut expecting) =
        (0usize, 1usize, false, false, false);
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && expecting && c != ']' {
            out.push(line);
            expecting = false;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    out
}

/// Lines on which the top-level items of a YAML block sequence start.
fn yaml_item_lines(text: &str) -> Vec<usize> {
    let indent = text
        .lines()
        .find(|l| l.trim_start().starts_with('-'))
        .map(|l| l.len() - l.trim_start().len())
        .unwrap_or(0);
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            l.len() - t.len() == indent && (t == "-" || t.starts_with("- "))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Loaded {
        parse(Path::new(name), text, Format::Auto, Shard::default()).unwrap()
    }

    #[test]
    fn urls_in_every_form() {
        let p = parse_proxy_url("socks5h://us%40er:p%3Ass@proxy.example:1081").unwrap();
        assert_eq!(p.protocol, ProxyProtocol::Socks5h);
        assert_eq!(
            (
                p.username.as_deref(),
                p.password.as_ref().map(Secret::expose)
            ),
            (Some("us@er"), Some("p:ss"))
        );
        assert_eq!(p.id, "socks5h://us@er@proxy.example:1081");
        let p = parse_proxy_url("http://[::1]:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 3128));
        let p = parse_proxy_url("10.0.0.1:8080:bob:pw").unwrap();
        assert_eq!(
            (
                p.protocol,
                p.username.as_deref(),
                p.password.as_ref().map(Secret::expose)
            ),
            (ProxyProtocol::Http, Some("bob"), Some("pw"))
        );
        assert_eq!(parse_proxy_url("socks4://h").unwrap().port, 1080);
        assert!(parse_proxy_url("gopher://h:1")
            .unwrap_err()
            .contains("unknown proxy protocol"));
    }

    #[test]
    fn errors_never_echo_passwords() {
        for bad in [
            "http://alice:hunter2@:99999",
            "socks5://alice:hunter2@host:0",
            "h:notaport:alice:hunter2",
            "http://alice:hunter2@h:1/path",
        ] {
            let e = parse_proxy_url(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let l = load(
            "x.csv",
            "protocol,host,port,username,password\nhttp,h,99999,alice,hunter2\n",
        );
        assert_eq!(l.errors.len(), 1);
        assert!(!l.errors[0].to_string().contains("hunter2"));
    }

    #[test]
    fn lines_skip_bad_rows_and_report_their_line() {
        let l = load("p.txt", "# comment\nhttp://127.0.0.1:3128\n\nnot a proxy\nsocks5://u:p@127.0.0.1:1080\nhttp://127.0.0.1:3128\n");
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(l.duplicates, 1);
        assert_eq!(l.errors.len(), 1);
        assert_eq!(l.errors[0].line, 4);
        assert_eq!(l.errors[0].field, "url");
        assert_eq!(
            l.first_duplicates[0].to_string(),
            "p.txt:6: duplicate id \"http://127.0.0.1:3128\" (first at line 2); entry ignored"
        );
    }

    #[test]
    fn duplicates_are_listed_by_line_up_to_a_bound_and_counted_exactly() {
        let mut text = String::from("id,url\n");
        for i in 0..30 {
            text.push_str(&format!("same,socks5://127.0.0.1:{}\n", 1000 + i));
        }
        let l = load("d.csv", &text);
        assert_eq!((l.proxies.len(), l.duplicates), (1, 29));
        assert_eq!(l.first_duplicates.len(), DUPLICATES_LISTED);
        assert_eq!(
            (l.first_duplicates[0].line, l.first_duplicates[0].first_line),
            (3, 2)
        );
        assert!(l.seen.is_empty(), "the id index is not kept after a read");
    }

    /// The id index holds positions, not ids: with many ids (the table
    /// grows, positions move buckets) each duplicate still names the line
    /// of its own first entry, and the kept entries are the first ones.
    #[test]
    fn duplicates_among_many_ids_name_their_own_first_line() {
        let mut text = String::from("id,protocol,host,port\n");
        // Lines 2..=2001: ids 0..2000; then lines 2002..: ids 1999, 1997, ... again.
        for i in 0..2000 {
            text.push_str(&format!(
                "id{i},http,10.0.{}.{},{}\n",
                i / 250,
                i % 250,
                1000 + i
            ));
        }
        for i in (0..2000).rev().step_by(2) {
            text.push_str(&format!("id{i},socks5,10.9.9.9,1\n"));
        }
        let l = load("many.csv", &text);
        assert_eq!((l.proxies.len(), l.duplicates), (2000, 1000));
        for (k, p) in l.proxies.iter().enumerate() {
            assert_eq!(p.id, format!("id{k}"));
            assert_eq!(p.protocol, ProxyProtocol::Http, "the first entry is kept");
        }
        for (k, d) in l.first_duplicates.iter().enumerate() {
            let i = 1999 - 2 * k;
            assert_eq!(d.id, format!("id{i}"));
            assert_eq!((d.line, d.first_line), (2002 + k, i + 2));
        }
    }

    /// Values many proxies repeat are one allocation for all of them: a
    /// long pool, provider, user name, labels, a password.
    #[test]
    fn repeated_values_are_shared_between_proxies() {
        let text = "\
- {url: 'http://customer-eu-residential:pw-0123456789@10.0.0.1:8000', pool: residential-europe-west, provider: some-large-provider, labels: {tier: gold}}
- {url: 'http://customer-eu-residential:pw-0123456789@10.0.0.2:8000', pool: residential-europe-west, provider: some-large-provider, labels: {tier: gold}}
- {url: 'http://customer-us-residential:other-password@10.0.0.3:8000', pool: residential-europe-west, provider: some-large-provider}
";
        let l = load("shared.yaml", text);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let [a, b, c] = &l.proxies[..] else {
            panic!("three proxies: {:?}", l.proxies)
        };
        for (what, x, y) in [
            ("pool", &a.pool, &b.pool),
            ("pool", &a.pool, &c.pool),
            ("provider", &a.provider, &c.provider),
        ] {
            assert!(x.shares_with(y), "{what}");
        }
        let (ua, ub, uc) = (
            a.username.as_ref(),
            b.username.as_ref(),
            c.username.as_ref(),
        );
        assert!(ua.zip(ub).is_some_and(|(x, y)| x.shares_with(y)), "user");
        assert!(
            !ua.zip(uc).is_some_and(|(x, y)| x.shares_with(y)),
            "another user"
        );
        let (pa, pb, pc) = (
            a.password.as_ref(),
            b.password.as_ref(),
            c.password.as_ref(),
        );
        assert!(
            pa.zip(pb).is_some_and(|(x, y)| x.shares_with(y)),
            "password"
        );
        assert!(
            !pa.zip(pc).is_some_and(|(x, y)| x.shares_with(y)),
            "another password"
        );
        assert_eq!(pc.map(Secret::expose), Some("other-password"));
        assert!(a.labels.shares_with(&b.labels), "labels");
        assert_eq!(a.labels["tier"], "gold");
        assert!(c.labels.is_empty());
    }

    #[test]
    fn an_empty_file_is_an_empty_inventory_in_every_format() {
        for (name, text) in [
            ("e.csv", ""),
            ("e.csv", "\n# nothing yet\n"),
            ("e.csv", "id,protocol,host,port\n"),
            ("e.txt", ""),
            ("e.json", ""),
            ("e.json", "[]"),
            ("e.yaml", "# no proxies\n"),
        ] {
            let l = parse(Path::new(name), text, Format::Auto, Shard::default())
                .unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
            assert!(
                l.proxies.is_empty() && l.errors.is_empty(),
                "{name} {text:?}"
            );
        }
    }

    #[test]
    fn csv_with_extra_columns_and_bad_port() {
        let text = "id,protocol,host,port,username,password,pool,provider,country\n\
                    a,socks5,127.0.0.1,1080,u,p,resi,acme,DE\n\
                    b,http,127.0.0.1,notaport,,,dc,acme,FR\n\
                    c,socks4,127.0.0.1,1081,,,dc,,US\n";
        let l = load("inv.csv", text);
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(
            (
                l.proxies[0].id.as_str(),
                l.proxies[0].pool.as_str(),
                l.proxies[0].provider.as_str()
            ),
            ("a", "resi", "acme")
        );
        assert_eq!(l.proxies[1].provider, DEFAULT_PROVIDER);
        assert_eq!((l.errors[0].line, l.errors[0].field.as_str()), (3, "port"));
    }

    #[test]
    fn a_stray_quote_costs_its_own_line_only() {
        let mut text = String::from("url,pool\n");
        for i in 0..10 {
            text.push_str(&format!("http://127.0.0.1:{},p\n", 1000 + i));
            if i == 2 {
                text.push_str("http://127.0.0.1:2000\",p\n");
            }
        }
        let l = load("inv.csv", &text);
        assert_eq!(l.proxies.len(), 10, "{:?}", l.errors);
        assert_eq!(l.errors.len(), 1);
        assert_eq!(l.errors[0].line, 5);
        assert!(
            l.errors[0].message.contains("unbalanced quote"),
            "{}",
            l.errors[0]
        );
    }

    #[test]
    fn a_non_utf8_byte_rejects_its_line_not_the_file() {
        let mut bytes =
            b"url\nhttp://127.0.0.1:1\nhttp://127.0.0.1:2\xff\nhttp://127.0.0.1:3\n".to_vec();
        let l = parse_bytes(Path::new("inv.csv"), &bytes, Format::Auto, Shard::default()).unwrap();
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(
            (l.errors[0].line, l.errors[0].message.as_str()),
            (3, "not valid UTF-8")
        );
        bytes.drain(..4);
        let l = parse_bytes(Path::new("inv.txt"), &bytes, Format::Auto, Shard::default()).unwrap();
        assert_eq!(
            (l.proxies.len(), l.errors.len(), l.errors[0].line),
            (2, 1, 2)
        );
        let yaml = b"- http://127.0.0.1:1\n- http://\xfe\n";
        let e =
            parse_bytes(Path::new("inv.yaml"), yaml, Format::Auto, Shard::default()).unwrap_err();
        assert!(e.to_string().contains("inv.yaml:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn empty_and_half_written_files() {
        for text in ["", "  \n\n"] {
            let e = parse_bytes(
                Path::new("inv.csv"),
                text.as_bytes(),
                Format::Auto,
                Shard::default(),
            )
            .unwrap_err();
            assert_eq!(e.kind(), "empty", "{e}");
        }
        // A comment is a deliberate "no proxies".
        let l = parse_bytes(
            Path::new("inv.txt"),
            b"# none\n",
            Format::Auto,
            Shard::default(),
        )
        .unwrap();
        assert!(l.proxies.is_empty() && l.errors.is_empty());
        // The last line cut short: reported, the rest kept.
        let l = load(
            "inv.csv",
            "protocol,host,port,pool\nhttp,127.0.0.1,1,a\nhttp,127.0.0.1,2,a\nhttp,127.0",
        );
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(l.errors[0].line, 4);
        assert!(
            l.errors[0].message.contains("no newline at the end"),
            "{}",
            l.errors[0]
        );
        let l = load("inv.txt", "http://127.0.0.1:1\nhttp://127.0.0.1:99");
        assert_eq!(
            l.proxies.len(),
            2,
            "a complete last line without newline is fine"
        );
        let l = load("inv.txt", "http://127.0.0.1:1\nhttp://u:p@127.0.0.1:31x");
        assert!(
            l.errors[0].message.contains("no newline at the end"),
            "{}",
            l.errors[0]
        );
    }

    #[test]
    fn deep_yaml_and_json_inventories_are_refused_naming_the_file() {
        for name in ["deep.yaml", "deep.json"] {
            let text = "[".repeat(100_000);
            let e = parse(Path::new(name), &text, Format::Auto, Shard::default()).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{name}:1:")) && msg.contains("levels deep"),
                "{msg}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("inv.txt");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0);
        let e = load_file(&fifo, Format::Auto, Shard::default()).unwrap_err();
        assert_eq!(e.kind(), "not_regular");
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }

    #[test]
    fn sharded_reads_keep_only_their_share() {
        let text: String = (0..300)
            .map(|i| format!("socks5://u{i}@127.0.0.1:1080\n"))
            .collect();
        let mut total = 0;
        for index in 0..3 {
            let shard = shard::Shard::new(index, 3).unwrap();
            let l = parse(Path::new("p.txt"), &text, Format::Auto, shard).unwrap();
            assert!(l.proxies.iter().all(|p| shard.owns(&p.id)));
            assert_eq!(l.proxies.len() + l.other_shards, 300);
            total += l.proxies.len();
        }
        assert_eq!(total, 300);
    }

    #[test]
    fn declared_countries_are_normalised_and_a_bad_one_skips_its_row() {
        let csv = "url,pool,country\n\
                   http://127.0.0.1:1,dc,de\n\
                   http://127.0.0.1:2,dc, US \n\
                   http://127.0.0.1:3,dc,\n\
                   http://127.0.0.1:4,dc,Germany\n\
                   http://127.0.0.1:5,dc,UK\n";
        let l = load("inv.csv", csv);
        let countries: Vec<Option<&str>> = l.proxies.iter().map(|p| p.country.as_deref()).collect();
        assert_eq!(countries, vec![Some("DE"), Some("US"), None]);
        let errors: Vec<String> = l.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "inv.csv:5: field `country`: invalid country \"Germany\": expected an ISO 3166-1 alpha-2 code such as DE or US; entry skipped".to_string(),
                "inv.csv:6: field `country`: invalid country \"UK\": expected an ISO 3166-1 alpha-2 code such as DE or US (the United Kingdom is GB); entry skipped".to_string(),
            ]
        );

        let yaml = "- url: socks5://127.0.0.1:1080\n  country: fr\n\
                    - {protocol: http, host: 127.0.0.1, port: 3128, country: NO}\n\
                    - {url: http://127.0.0.1:3129, country: 12}\n";
        let l = load("inv.yaml", yaml);
        let countries: Vec<Option<&str>> = l.proxies.iter().map(|p| p.country.as_deref()).collect();
        assert_eq!(countries, vec![Some("FR"), Some("NO")]);
        assert_eq!(
            (l.errors[0].line, l.errors[0].field.as_str()),
            (4, "country")
        );

        let json = "[{\"url\": \"http://127.0.0.1:1\", \"country\": \"jp\"}, {\"url\": \"http://127.0.0.1:2\", \"country\": \"XX\"}]";
        let l = load("inv.json", json);
        assert_eq!(l.proxies.len(), 1);
        assert_eq!(l.proxies[0].country.as_deref(), Some("JP"));
        assert_eq!(l.errors[0].field, "country");
    }

    #[test]
    fn yaml_and_json_lists() {
        let yaml = "- socks5://127.0.0.1:1080\n- url: http://127.0.0.1:3128\n  pool: dc\n  labels: {tier: 1}\n- protocol: http\n  host: 127.0.0.1\n  port: 70000\n- {protocol: socks4, host: 127.0.0.1, port: 1081, colour: red}\n";
        let l = load("inv.yaml", yaml);
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(
            l.proxies[1].labels.get("tier").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            l.errors
                .iter()
                .map(|e| (e.line, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(5, "port"), (8, "colour")]
        );

        let json = "[\n  \"http://127.0.0.1:1\",\n  {\"url\": \"bogus://x\"},\n  {\"id\": 7, \"protocol\": \"socks5h\", \"host\": \"localhost\", \"port\": \"1080\"}\n]";
        let l = load("inv.json", json);
        assert_eq!(l.proxies.len(), 2);
        assert_eq!(l.proxies[1].id, "7");
        assert_eq!((l.errors[0].line, l.errors[0].field.as_str()), (3, "url"));
        assert!(parse(
            Path::new("x.json"),
            "{\"a\":1}",
            Format::Auto,
            Shard::default()
        )
        .is_err());
    }
}
