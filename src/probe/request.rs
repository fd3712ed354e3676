//! The one HTTP/1.1 exchange of a check: writing the request, reading a
//! bounded response head and body, and the body checks.

use std::net::IpAddr;
use std::sync::LazyLock;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use url::Url;

use super::dial::io_error;
use super::proxy_error::Marks;
use super::{printable, CheckOptions, StepError};
use crate::model::{Proxy, Reason};
use crate::secret::Secret;

/// Headers parsed at most in a response head; more is an `http` failure.
const MAX_HEADERS: usize = 100;
/// A chunk-size line (with extensions) longer than this is not HTTP.
const MAX_CHUNK_LINE: usize = 1024;
/// A `Location` longer than this is cut (and will most likely not parse).
const MAX_LOCATION: usize = 4096;
/// Bytes asked of the socket per read: small, since most answers are small.
const READ_CHUNK: usize = 4096;

/// Write the request for `url` into `out`. `absolute` selects the
/// absolute-form request line sent to HTTP proxies for `http://` targets,
/// which then carries the proxy's credentials. `headers` are the configured
/// ones, or none after a redirect to another origin.
pub(crate) fn build_request(
    out: &mut BytesMut,
    url: &Url,
    absolute: bool,
    proxy: &Proxy,
    headers: &[(String, Secret)],
) {
    out.clear();
    out.extend_from_slice(b"GET ");
    if absolute {
        out.extend_from_slice(url[..url::Position::AfterQuery].as_bytes());
    } else {
        out.extend_from_slice(url[url::Position::BeforePath..url::Position::AfterQuery].as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("host") {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host_header(url).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has("user-agent") {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(super::USER_AGENT.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has("accept") {
        out.extend_from_slice(b"Accept: */*\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n");
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.expose().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if absolute {
        super::http_proxy::write_proxy_authorization(proxy, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// `host[:port]`, the port only when it is not the scheme's default.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Wait for the first byte of the response (it lands in `buf`).
pub(crate) async fn read_first_byte<S>(stream: &mut S, buf: &mut BytesMut) -> Result<(), StepError>
where
    S: AsyncRead + Unpin,
{
    buf.clear();
    buf.reserve(READ_CHUNK);
    let n = stream
        .read_buf(buf)
        .await
        .map_err(|e| io_error(&e, "waiting for the response"))?;
    if n == 0 {
        return Err(io_error(
            &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            "waiting for the response (no response)",
        ));
    }
    Ok(())
}

/// Whether the first bytes of a response can begin an HTTP/1.x status
/// line (`HTTP/`, or as much of it as has arrived).
pub(crate) fn starts_like_http(first: &[u8]) -> bool {
    let n = first.len().min(5);
    first[..n] == b"HTTP/"[..n]
}

/// A guess at what answered instead of an HTTP proxy, from its first byte:
/// the two mistakes seen in inventories (a SOCKS or TLS port declared as
/// HTTP). Empty when there is no good guess.
pub(crate) fn not_http_hint(first: &[u8]) -> String {
    let Some(&b) = first.first() else {
        return String::new();
    };
    let guess = match b {
        0x05 => ": a SOCKS5 proxy?",
        0x00 | 0x04 => ": a SOCKS4 proxy?",
        0x15 | 0x16 => ": TLS, an https:// proxy?",
        _ => "",
    };
    format!(" (first byte 0x{b:02X}{guess})")
}

/// What the response head says.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: u16,
    pub location: Option<String>,
    framing: Framing,
    /// For error statuses (400 and more): the headers that can tell a
    /// proxy's own error apart from the target's.
    pub(crate) marks: Option<Box<Marks>>,
    /// The peer said it closes after this response (`Connection: close`,
    /// or HTTP/1.0 without keep-alive).
    closes: bool,
}

impl Head {
    /// Whether the body's end will come: a length, chunks, no body at all,
    /// or a peer that said it closes after the response.
    pub(crate) fn body_end_is_known(&self) -> bool {
        self.framing != Framing::UntilClose || self.closes
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Read the response head. On return `buf` holds the body bytes read so far.
pub(crate) async fn read_head<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_header_bytes: usize,
) -> Result<Head, StepError>
where
    S: AsyncRead + Unpin,
{
    loop {
        match parse_head(buf)? {
            Some((head, len)) => {
                buf.advance(len);
                // Interim answers (100 Continue, 103 Early Hints) precede the real one.
                if (100..200).contains(&head.status) && head.status != 101 {
                    continue;
                }
                return Ok(head);
            }
            None => {
                if buf.len() >= max_header_bytes {
                    return Err(StepError::new(
                        Reason::Http,
                        format!("response headers exceed {max_header_bytes} bytes"),
                    ));
                }
                buf.reserve(READ_CHUNK);
                let n = stream
                    .read_buf(buf)
                    .await
                    .map_err(|e| io_error(&e, "reading response headers"))?;
                if n == 0 {
                    return Err(io_error(
                        &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                        "reading response headers",
                    ));
                }
            }
        }
    }
}

pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, StepError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(StepError::new(
                Reason::Http,
                format!("invalid HTTP response: {e}"),
            ))
        }
    };
    let status = resp.code.unwrap_or(0);
    let mut marks = (status >= 400).then(|| {
        Box::new(Marks {
            reason_phrase: resp.reason.unwrap_or("").to_string(),
            ..Marks::default()
        })
    });
    let mut location = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut connection: Option<bool> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| StepError::new(Reason::Http, "invalid Content-Length header"))?;
            if length.is_some_and(|l| l != v) {
                return Err(StepError::new(
                    Reason::Http,
                    "conflicting Content-Length headers",
                ));
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            let v = String::from_utf8_lossy(h.value);
            // Only the last coding decides the framing.
            chunked = v
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("location") {
            // Followed, so not cut short; quoted only through `quote_peer`.
            let l = printable(&String::from_utf8_lossy(h.value));
            location = Some(crate::secret::cut(&l, MAX_LOCATION));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            let has = |t: &str| v.split(',').any(|o| o.trim() == t);
            if has("close") {
                connection = Some(true);
            } else if has("keep-alive") {
                connection = Some(false);
            }
        } else if let Some(m) = marks.as_mut() {
            m.note(h.name, h.value);
        }
    }
    let closes = connection.unwrap_or(resp.version == Some(0));
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::None
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(l) = length {
        Framing::Length(l)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        Head {
            status,
            location,
            framing,
            marks,
            closes,
        },
        len,
    )))
}

/// Read the body after [`read_head`], decoding chunked framing, keeping at
/// most `max` bytes. On return `buf` holds exactly the decoded (possibly
/// truncated) body. Stopping at `max` is not an error.
pub(crate) async fn read_body<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: &Head,
    max: usize,
    max_trailer_bytes: usize,
) -> Result<(), StepError>
where
    S: AsyncRead + Unpin,
{
    match head.framing {
        Framing::None => {
            buf.clear();
            Ok(())
        }
        Framing::Length(len) => {
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(max);
            while buf.len() < want {
                if read_more(stream, buf).await? == 0 {
                    return Err(io_error(
                        &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                        &format!("reading the body ({} of {len} bytes)", buf.len()),
                    ));
                }
            }
            buf.truncate(want);
            Ok(())
        }
        Framing::UntilClose => {
            while buf.len() < max {
                if read_more(stream, buf).await? == 0 {
                    break;
                }
            }
            buf.truncate(max);
            Ok(())
        }
        Framing::Chunked => {
            let mut dec = Dechunker::new(max, max_trailer_bytes);
            loop {
                if dec.feed(buf)? {
                    return Ok(());
                }
                if read_more(stream, buf).await? == 0 {
                    return Err(io_error(
                        &std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                        "reading a chunked body",
                    ));
                }
            }
        }
    }
}

async fn read_more<S>(stream: &mut S, buf: &mut BytesMut) -> Result<usize, StepError>
where
    S: AsyncRead + Unpin,
{
    buf.reserve(READ_CHUNK);
    stream
        .read_buf(buf)
        .await
        .map_err(|e| io_error(&e, "reading the body"))
}

/// Decodes chunked framing in place: `buf[..out]` is decoded body, and
/// `buf[out..]` is raw input not yet decoded. Memory stays bounded by the
/// body limit plus one read.
#[derive(Debug)]
struct Dechunker {
    out: usize,
    state: ChunkState,
    max: usize,
    trailer_budget: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Dechunker {
    fn new(max: usize, trailer_budget: usize) -> Self {
        Dechunker {
            out: 0,
            state: ChunkState::Size,
            max,
            trailer_budget,
        }
    }

    /// Decode what `buf` holds. `Ok(true)` when done (end of body or limit
    /// reached); `buf` is then exactly the decoded body.
    fn feed(&mut self, buf: &mut BytesMut) -> Result<bool, StepError> {
        let mut pos = self.out;
        let done = loop {
            if self.out >= self.max {
                break true;
            }
            let step = match self.state {
                ChunkState::Size => self.size_line(&buf[pos..])?,
                ChunkState::Data(rem) => self.data(buf, pos, rem),
                ChunkState::DataEnd => self.data_end(&buf[pos..])?,
                ChunkState::Trailer => self.trailer_line(&buf[pos..])?,
            };
            match step {
                Progress::Consumed(n) => pos += n,
                Progress::NeedMore => break false,
                Progress::End => break true,
            }
        };
        if done {
            buf.truncate(self.out);
        } else {
            // Move the undecoded tail next to the decoded body.
            let len = buf.len();
            buf.copy_within(pos..len, self.out);
            buf.truncate(self.out + (len - pos));
        }
        Ok(done)
    }

    /// `avail` starts at a chunk size line.
    fn size_line(&mut self, avail: &[u8]) -> Result<Progress, StepError> {
        let Some(eol) = find_crlf(avail) else {
            if avail.len() > MAX_CHUNK_LINE {
                return Err(StepError::new(Reason::Http, "chunk size line too long"));
            }
            return Ok(Progress::NeedMore);
        };
        let line = &avail[..eol];
        let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(digits)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| StepError::new(Reason::Http, "invalid chunk size"))?;
        self.state = if size == 0 {
            ChunkState::Trailer
        } else {
            ChunkState::Data(size)
        };
        Ok(Progress::Consumed(eol + 2))
    }

    /// `buf[pos..]` is chunk data with `rem` bytes left in the chunk: move
    /// what is there (up to the body limit) next to the decoded body.
    fn data(&mut self, buf: &mut BytesMut, pos: usize, rem: u64) -> Progress {
        let avail = buf.len() - pos;
        if avail == 0 {
            return Progress::NeedMore;
        }
        let n = usize::try_from(rem)
            .unwrap_or(usize::MAX)
            .min(avail)
            .min(self.max - self.out);
        buf.copy_within(pos..pos + n, self.out);
        self.out += n;
        let rem = rem - n as u64;
        self.state = if rem == 0 {
            ChunkState::DataEnd
        } else {
            ChunkState::Data(rem)
        };
        Progress::Consumed(n)
    }

    /// `avail` starts at the CRLF that ends a chunk's data.
    fn data_end(&mut self, avail: &[u8]) -> Result<Progress, StepError> {
        if avail.len() < 2 {
            return Ok(Progress::NeedMore);
        }
        if &avail[..2] != b"\r\n" {
            return Err(StepError::new(
                Reason::Http,
                "chunk data not followed by CRLF",
            ));
        }
        self.state = ChunkState::Size;
        Ok(Progress::Consumed(2))
    }

    /// `avail` starts at a trailer line; an empty one ends the body.
    fn trailer_line(&mut self, avail: &[u8]) -> Result<Progress, StepError> {
        let Some(eol) = find_crlf(avail) else {
            if avail.len() > self.trailer_budget {
                return Err(StepError::new(Reason::Http, "chunked trailer too long"));
            }
            return Ok(Progress::NeedMore);
        };
        if eol == 0 {
            return Ok(Progress::End);
        }
        self.trailer_budget = self.trailer_budget.saturating_sub(eol + 2);
        if self.trailer_budget == 0 {
            return Err(StepError::new(Reason::Http, "chunked trailer too long"));
        }
        Ok(Progress::Consumed(eol + 2))
    }
}

/// What one [`Dechunker`] step did with the input.
enum Progress {
    /// Decoded or skipped this many input bytes; go on.
    Consumed(usize),
    /// The input ends mid-element: read more.
    NeedMore,
    /// The last trailer line: the body is complete.
    End,
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// The configured body checks, in order: contains, regex, exit-IP leak.
/// A judge's answer is read by [`super::judge`] instead of scanned for our
/// IPs (its headers may name us without the exit being ours).
pub(crate) fn check_body(body: &[u8], opts: &CheckOptions) -> Result<(), StepError> {
    let scan_own_ips = !opts.own_ips.is_empty() && !opts.judge;
    if opts.body_contains.is_none() && opts.body_regex.is_none() && !scan_own_ips {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    if let Some(needle) = &opts.body_contains {
        if !text.contains(needle.as_str()) {
            return Err(StepError::new(
                Reason::BodyMismatch,
                format!(
                    "body ({} bytes read) does not contain {:?}",
                    body.len(),
                    crate::secret::cut(&printable(needle), 120)
                ),
            ));
        }
    }
    if let Some(re) = &opts.body_regex {
        if !re.is_match(&text) {
            return Err(StepError::new(
                Reason::BodyMismatch,
                format!(
                    "body ({} bytes read) does not match /{}/",
                    body.len(),
                    crate::secret::cut(&printable(re.as_str()), 120)
                ),
            ));
        }
    }
    if scan_own_ips {
        let own: Vec<IpAddr> = opts.own_ips.iter().map(IpAddr::to_canonical).collect();
        if let Some(ip) = ips_in(&text).find(|ip| own.contains(&ip.to_canonical())) {
            return Err(StepError::new(
                Reason::ExitIpLeak,
                format!("target reports our own address {ip} as the exit IP"),
            ));
        }
    }
    Ok(())
}

static IPV4: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\b\d{1,3}(?:\.\d{1,3}){3}\b").expect("constant regex is valid")
});

/// Every IPv4 and IPv6 literal found in `text`.
pub(crate) fn ips_in(text: &str) -> impl Iterator<Item = IpAddr> + '_ {
    let v4 = IPV4
        .find_iter(text)
        .filter_map(|m| m.as_str().parse::<std::net::Ipv4Addr>().ok())
        .map(IpAddr::V4);
    let v6 = text
        .split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .filter(|t| t.matches(':').count() >= 2)
        .filter_map(|t| t.trim_matches('.').parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6);
    v4.chain(v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk_all(input: &[u8], max: usize, split: usize) -> Result<(bool, Vec<u8>), StepError> {
        let mut buf = BytesMut::new();
        let mut dec = Dechunker::new(max, 1024);
        let mut done = false;
        for piece in input.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            if dec.feed(&mut buf)? {
                done = true;
                break;
            }
        }
        Ok((done, buf.to_vec()))
    }

    #[test]
    fn dechunks_across_any_split() {
        let input = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n";
        for split in 1..input.len() {
            let (done, body) = dechunk_all(input, 1 << 20, split).unwrap();
            assert!(done, "split {split}");
            assert_eq!(body, b"hello, world", "split {split}");
        }
    }

    #[test]
    fn dechunk_stops_at_the_limit() {
        let input = b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n";
        let (done, body) = dechunk_all(input, 15, 4).unwrap();
        assert!(done);
        assert_eq!(body, b"012345678901234");
    }

    #[test]
    fn dechunk_rejects_garbage() {
        assert!(dechunk_all(b"zz\r\nabc", 100, 3).is_err());
        assert!(dechunk_all(b"3\r\nabcX\r\n", 100, 100).is_err());
        let (done, _) = dechunk_all(b"3\r\nab", 100, 100).unwrap();
        assert!(!done);
    }

    #[test]
    fn finds_ips_in_bodies() {
        let text = r#"{"origin": "203.0.113.7, 2001:db8::1", "x": "999.1.1.1", "v": "1.2.3"}"#;
        let ips: Vec<IpAddr> = ips_in(text).collect();
        assert_eq!(
            ips,
            vec![
                "203.0.113.7".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse::<IpAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn parses_heads_and_framing() {
        let (h, len) =
            parse_head(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap()
                .unwrap();
        assert_eq!(h.status, 302);
        assert_eq!(h.location.as_deref(), Some("/x"));
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(len, 55);
        let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
            .unwrap()
            .is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn error_heads_keep_their_marks_and_others_none() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nServer: squid/5.7\r\nProxy-Status: a; error=dns_error\r\nX-Squid-Error: ERR_DNS_FAIL 0\r\nProxy-Status: b; received-status=503\r\nContent-Length: 0\r\n\r\n";
        let (h, _) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            h.marks.as_deref(),
            Some(&Marks {
                reason_phrase: "Service Unavailable".into(),
                proxy_status: "a; error=dns_error, b; received-status=503".into(),
                squid_error: Some("ERR_DNS_FAIL 0".into()),
                server: Some("squid/5.7".into()),
            })
        );
        let (h, _) = parse_head(b"HTTP/1.1 302 Found\r\nX-Squid-Error: ERR_X 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.marks, None);
    }

    #[test]
    fn first_bytes_like_http_or_not() {
        for ok in [&b"H"[..], b"HTT", b"HTTP/", b"HTTP/1.1 200 OK\r\n"] {
            assert!(starts_like_http(ok), "{ok:?}");
        }
        for bad in [
            &b"\x05\xff"[..],
            b"\x16\x03\x01",
            b"http/1.1 200",
            b"<html>",
            b"HTTX/",
        ] {
            assert!(!starts_like_http(bad), "{bad:?}");
        }
        assert_eq!(
            not_http_hint(b"\x05\xff"),
            " (first byte 0x05: a SOCKS5 proxy?)"
        );
        assert_eq!(
            not_http_hint(b"\x16\x03"),
            " (first byte 0x16: TLS, an https:// proxy?)"
        );
        assert_eq!(not_http_hint(b"<html>"), " (first byte 0x3C)");
    }
}
