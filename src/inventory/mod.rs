//! Inventory sources: where the proxies to sweep come from.
//!
//! A file source reads one of four formats and yields [`Proxy`] values. A
//! malformed entry never aborts a read: it becomes a [`RowError`] naming the
//! file, line and field, is reported, and the rest is checked. Credentials
//! never appear in those errors: every echo of a user's line goes through
//! [`crate::secret::redact_credentials`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) mod pharox_db;
pub(crate) mod shard;
mod source;

pub use shard::Shard;
pub(crate) use source::FileStamp;
pub use source::{InventoryRead, ReadMode, Source, SourceError, SourceSpec};

use crate::model::{Proxy, ProxyProtocol, DEFAULT_POOL, DEFAULT_PROVIDER};
use crate::secret::{redact_credentials, Userinfo};

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
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Valid proxies, duplicates (same id) removed, first one kept.
    pub proxies: Vec<Proxy>,
    /// Malformed entries, skipped.
    pub errors: Vec<RowError>,
    /// Entries dropped because their id was already seen.
    pub duplicates: usize,
    /// The first [`DUPLICATES_LISTED`] of them, with their lines.
    pub first_duplicates: Vec<Duplicate>,
    /// Valid entries left to other replicas by sharding.
    pub other_shards: usize,
    shard: Shard,
    /// Line of each id kept, to name the first of a duplicate pair.
    seen: std::collections::HashMap<String, usize>,
}

impl Loaded {
    /// Keep a parsed entry, or record why it was skipped.
    fn push(&mut self, path: &Path, line: usize, entry: Result<Proxy, (String, String)>) {
        match entry {
            // Dropping other shards' entries while parsing keeps a replica's
            // peak memory proportional to its share, not to the whole file.
            Ok(p) if !self.shard.owns(&p.id) => self.other_shards += 1,
            Ok(p) => match self.seen.get(&p.id) {
                Some(&first_line) => {
                    self.duplicates += 1;
                    if self.first_duplicates.len() < DUPLICATES_LISTED {
                        self.first_duplicates.push(Duplicate {
                            file: path.to_path_buf(),
                            line,
                            first_line,
                            id: p.id,
                        });
                    }
                }
                None => {
                    self.seen.insert(p.id.clone(), line);
                    self.proxies.push(p);
                }
            },
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
/// ([`Shard::default`] owns every entry).
pub(crate) fn load_file(
    path: &Path,
    format: Format,
    shard: Shard,
) -> Result<Loaded, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, format, shard)
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
        Format::Lines | Format::Auto => parse_lines(path, text, &mut out),
        Format::Csv => parse_csv(path, text, &mut out)?,
        Format::Json | Format::Yaml => parse_list(path, text, format, &mut out)?,
    }
    out.seen = Default::default();
    Ok(out)
}

/// Drop entries whose id was already seen (the first one wins); returns how many.
fn dedup(proxies: &mut Vec<Proxy>) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(proxies.len());
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

/// Quote a user's line in an error: the password goes, the username stays so
/// the line can be found.
fn redact(s: &str) -> String {
    redact_credentials(s, Userinfo::KeepUsername)
}

/// Parse one proxy URL: `scheme://[user[:pass]@]host[:port]`, or the common
/// list forms `host:port` and `host:port:user:pass` (protocol http).
/// User and password are percent-decoded. Errors never contain the password.
pub fn parse_proxy_url(s: &str) -> Result<Proxy, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty proxy URL".into());
    }
    if !s.contains("://") {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, port, user, pass) = match parts.as_slice() {
            [h, p] => (*h, *p, None, None),
            [h, p, u, pw] => (*h, *p, Some(*u), Some(*pw)),
            _ => {
                return Err(format!(
                    "invalid proxy {:?}: expected scheme://[user:pass@]host:port, host:port or host:port:user:pass",
                    redact(s)
                ))
            }
        };
        let port = parse_port(port)?;
        let mut p = build(
            ProxyProtocol::Http,
            host,
            port,
            user.map(str::to_string),
            pass.map(str::to_string),
        )?;
        p.id = Proxy::derive_id(p.protocol, p.username.as_deref(), &p.host, p.port);
        return Ok(p);
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
    let pass = u.password().map(decode);
    if u.path() != "/" && !u.path().is_empty() {
        return Err(format!(
            "invalid proxy URL {:?}: a proxy URL has no path",
            redact(s)
        ));
    }
    build(protocol, host, port, user, pass)
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
    pass: Option<String>,
) -> Result<Proxy, String> {
    let host = host.trim();
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("invalid host {host:?}"));
    }
    let mut p = Proxy::new(protocol, host, port);
    p.username = user.filter(|u| !u.is_empty());
    p.password = pass;
    p.id = Proxy::derive_id(protocol, p.username.as_deref(), &p.host, port);
    Ok(p)
}

fn parse_lines(path: &Path, text: &str, out: &mut Loaded) {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            path,
            i + 1,
            parse_proxy_url(line).map_err(|m| ("url".to_string(), m)),
        );
    }
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
    password: Option<String>,
    pool: Option<String>,
    provider: Option<String>,
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
                p.username = Some(u);
            }
            if let Some(pw) = self.password.filter(|p| !p.is_empty()) {
                p.password = Some(pw);
            }
            p.id = Proxy::derive_id(p.protocol, p.username.as_deref(), &p.host, p.port);
        }
        if let Some(id) = self
            .id
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        {
            p.id = id;
        }
        p.pool = self
            .pool
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_POOL.into());
        p.provider = self
            .provider
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_PROVIDER.into());
        p.labels = self.labels;
        Ok(p)
    }
}

const CSV_COLUMNS: [&str; 9] = [
    "id", "url", "protocol", "host", "port", "username", "password", "pool", "provider",
];

fn parse_csv(path: &Path, text: &str, out: &mut Loaded) -> Result<(), InventoryError> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| InventoryError::Format {
            file: path.to_path_buf(),
            line: 1,
            message: format!("bad CSV header: {e}"),
        })?
        .clone();
    let cols: Vec<Option<usize>> = headers
        .iter()
        .map(|h| {
            CSV_COLUMNS
                .iter()
                .position(|c| c.eq_ignore_ascii_case(h.trim()))
        })
        .collect();
    let has = |name: &str| headers.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
    let by_fields = has("protocol") && has("host") && has("port");
    if !(has("url") || by_fields) {
        return Err(InventoryError::Format {
            file: path.to_path_buf(),
            line: 1,
            message: "CSV header must name `url`, or `protocol`, `host` and `port` (optional: id, username, password, pool, provider)"
                .into(),
        });
    }
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                out.errors.push(RowError {
                    file: path.to_path_buf(),
                    line,
                    field: "row".into(),
                    message: "malformed CSV row".into(),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut e = Entry::default();
        for (i, v) in rec.iter().enumerate() {
            let v = Some(v.to_string()).filter(|s| !s.is_empty());
            match cols.get(i).copied().flatten() {
                Some(0) => e.id = v,
                Some(1) => e.url = v,
                Some(2) => e.protocol = v,
                Some(3) => e.host = v,
                Some(4) => e.port = v.map(serde_json::Value::String),
                Some(5) => e.username = v,
                Some(6) => e.password = v,
                Some(7) => e.pool = v,
                Some(8) => e.provider = v,
                _ => {}
            }
        }
        out.push(path, line, e.into_proxy());
    }
    Ok(())
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
    let items: Vec<serde_json::Value> = match format {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| fmt_err(e.line(), format!("not a JSON list of proxies: {e}")))?,
        _ => {
            let v: Vec<serde_yaml_ng::Value> = serde_yaml_ng::from_str(text).map_err(|e| {
                fmt_err(
                    e.location().map(|l| l.line()).unwrap_or(0),
                    format!("not a YAML list of proxies: {e}"),
                )
            })?;
            v.into_iter()
                .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
                .collect()
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
                if let Some(id) = map.get_mut("id") {
                    if id.is_number() {
                        *id = serde_json::Value::String(id.to_string());
                    }
                }
                serde_json::from_value::<Entry>(serde_json::Value::Object(map)).map_err(|e| {
                    // serde names the unknown or mistyped field; that is the field.
                    let msg = e.to_string();
                    let field = msg.split('`').nth(1).unwrap_or("entry").to_string();
                    (field, redact(&msg))
                })
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
            (p.username.as_deref(), p.password.as_deref()),
            (Some("us@er"), Some("p:ss"))
        );
        assert_eq!(p.id, "socks5h://us@er@proxy.example:1081");
        let p = parse_proxy_url("http://[::1]:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 3128));
        let p = parse_proxy_url("10.0.0.1:8080:bob:pw").unwrap();
        assert_eq!(
            (p.protocol, p.username.as_deref(), p.password.as_deref()),
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
