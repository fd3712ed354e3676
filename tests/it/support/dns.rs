//! A loopback DNS server that answers every query NXDOMAIN, for the real
//! proxies that resolve names themselves (squid). With it a proxy's lookups
//! never leave loopback and fail at once (with nothing listening where the
//! proxy sends its queries, squid retries for about 30 s before it gives
//! up), so a test can ask a proxy for a name that does not exist.
//!
//! One per test process, on its own thread, bound to UDP port 53 (the only
//! port squid's `dns_nameservers` talks to) of an address in 127.53.0.0/16
//! picked from the process id, so parallel test processes do not collide.
//! Port 53 needs root; without it there is no server and squid keeps the
//! old, silent `127.0.0.1`.
//!
//! And its opposite, [`SilentResolverNs`]: a network namespace whose
//! resolver never answers, for what a lookup that never returns does to us.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The address of the NXDOMAIN server, started on first use; `None` when
/// it cannot bind (not root).
pub(crate) fn nxdomain_server() -> Option<Ipv4Addr> {
    static ADDR: OnceLock<Option<Ipv4Addr>> = OnceLock::new();
    *ADDR.get_or_init(start)
}

fn start() -> Option<Ipv4Addr> {
    let pid = std::process::id();
    for i in 0..64u32 {
        let n = pid.wrapping_add(i);
        let ip = Ipv4Addr::new(127, 53, ((n >> 8) & 0xff) as u8, (n & 0xff) as u8 | 1);
        if let Ok(sock) = UdpSocket::bind(SocketAddr::from((ip, 53))) {
            std::thread::Builder::new()
                .name(format!("nxdomain-{ip}"))
                .spawn(move || serve(&sock))
                .ok()?;
            return Some(ip);
        }
    }
    None
}

fn serve(sock: &UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = nxdomain(&buf[..n]) {
            let _ = sock.send_to(&reply, peer);
        }
    }
}

/// The query echoed back as a response: same id and question, QR and RA
/// set, RD copied, RCODE 3 (NXDOMAIN), no records.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut r = query.to_vec();
    r[2] = 0x80 | (query[2] & 0x01);
    r[3] = 0x80 | 0x03;
    // ANCOUNT, NSCOUNT, ARCOUNT: none (an EDNS OPT record is dropped with
    // everything after the question).
    r[6..12].fill(0);
    let question_end = question_end(query)?;
    r.truncate(question_end);
    Some(r)
}

/// Where the (single) question section ends: QNAME labels, QTYPE, QCLASS.
fn question_end(q: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        i += len;
    }
    (i + 4 <= q.len()).then_some(i + 4)
}

/// A network namespace holding only `lo` whose resolver (127.0.0.1:53, by
/// the namespace's own resolv.conf) takes every query and never answers;
/// removed, with its silent resolver, on drop.
pub(crate) struct SilentResolverNs {
    name: String,
    resolver: std::process::Child,
}

impl SilentResolverNs {
    pub(crate) fn start() -> SilentResolverNs {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pharox-dns-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        // `ip netns exec` mounts /etc/netns/<name>/resolv.conf over
        // /etc/resolv.conf for what it runs.
        let etc = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&etc).expect("netns etc");
        std::fs::write(
            format!("{etc}/resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
        )
        .expect("resolv.conf");
        // Bound and never read: queries queue, no answer, no ICMP refusal.
        // It exits by itself after two minutes.
        let mut resolver = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-c"])
            .arg(
                "import socket, time\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('127.0.0.1', 53))\n\
                 print('ready', flush=True)\n\
                 time.sleep(120)\n",
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("silent resolver");
        let mut line = String::new();
        let stdout = resolver.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("resolver ready");
        assert_eq!(line.trim(), "ready");
        SilentResolverNs { name, resolver }
    }

    /// The namespace, for `ip netns exec`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for SilentResolverNs {
    fn drop(&mut self) {
        let _ = self.resolver.kill();
        let _ = self.resolver.wait();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}
