//! Process limits checked at start: enough file descriptors for the
//! configured concurrency. The crate's only `unsafe` lives here.

/// File descriptors kept free for the server, logs, the database and scrapes.
const FD_RESERVE: u64 = 64;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and check that
/// `concurrency` sockets (one per check in flight) fit. Returns the limit.
#[allow(unsafe_code)]
pub fn ensure_fd_limit(concurrency: usize) -> Result<u64, String> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Ok(u64::MAX);
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        let soft = lim.rlim_cur as u64;
        let need = concurrency as u64 + FD_RESERVE;
        if soft < need {
            return Err(format!(
                "concurrency {concurrency} needs about {need} file descriptors but the limit is {soft} (hard limit {}); \
                 lower --concurrency to at most {} or raise the limit (ulimit -n, or LimitNOFILE= in systemd)",
                lim.rlim_max,
                soft.saturating_sub(FD_RESERVE)
            ));
        }
        Ok(soft)
    }
    #[cfg(not(unix))]
    {
        let _ = concurrency;
        Ok(u64::MAX)
    }
}
