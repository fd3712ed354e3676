//! A check that finds no file descriptor to dial with is the exporter's
//! shortage, not the proxy's fault: it is retried, then reported as
//! `local_resources` (unchecked), never as a proxy failure such as
//! `connect_error`.
//!
//! The descriptor limit is process-wide, so the test runs itself again as
//! a child process (`PHAROX_FD_CHILD=1`), which lowers its own limit and
//! fills it; the tests running in parallel in this process are untouched.

use pharox_exporter::{Proxy, ProxyProtocol, Reason};
use pharox_testkit::{FakeProxy, FakeTarget, ProxyBehavior, Reply};

const CHILD: &str = "PHAROX_FD_CHILD";
const NAME: &str = "fd_exhaustion::a_check_without_descriptors_is_unchecked_not_failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_without_descriptors_is_unchecked_not_failed() {
    if !pharox_testkit::in_child_process(CHILD, NAME) {
        return;
    }
    // The child.
    let target = FakeTarget::start(Reply::ok("ok")).await.expect("target");
    let fake = FakeProxy::socks5(ProxyBehavior::healthy())
        .await
        .expect("fake");
    let pki = pharox_testkit::pki::client_config();
    let opts = crate::support::check_options(target.url("/").as_str(), pki.clone(), pki);
    let proxy = Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", fake.addr().port());

    // Fill the descriptor table: lower the soft limit a little above what
    // is open, then hold sockets until the next one fails.
    let open = std::fs::read_dir("/proc/self/fd").expect("fds").count() as u64;
    let low = libc::rlimit {
        rlim_cur: (open + 16) as libc::rlim_t,
        rlim_max: (open + 4096) as libc::rlim_t,
    };
    // SAFETY: setrlimit on this (child) process only reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut held = Vec::new();
    while let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
        held.push(s);
    }
    let r = pharox_exporter::check(&proxy, &opts).await;
    assert_eq!(r.reason, Some(Reason::LocalResources), "{r:?}");
    assert!(r.is_unchecked(), "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("file descriptor"),
        "{r:?}"
    );
    // Descriptors back: the same proxy is fine.
    drop(held);
    let r = pharox_exporter::check(&proxy, &opts).await;
    assert!(r.is_up() && !r.is_unchecked(), "{r:?}");
}
