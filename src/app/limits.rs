//! Process limits checked at start: enough file descriptors for the
//! configured concurrency and the HTTP server's connection cap. The
//! crate's only `unsafe` lives here.

/// File descriptors kept free beyond the two budgets: logs, the listener,
/// the database, inventory reads.
const FD_RESERVE: u64 = 64;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit and check that the
/// probes' `concurrency` sockets (one per check in flight) and the HTTP
/// server's `server_connections` (its cap; 0 for one-shot commands) fit
/// together: two budgets, so that a full server never leaves a check
/// without a descriptor to dial with. Returns the limit.
#[allow(unsafe_code)]
pub fn ensure_fd_limit(concurrency: usize, server_connections: usize) -> Result<u64, String> {
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
        let server = server_connections as u64;
        let need = concurrency as u64 + server + FD_RESERVE;
        if soft < need {
            let web = if server > 0 {
                format!(" plus {server} HTTP connections (--web.max-connections)")
            } else {
                String::new()
            };
            return Err(format!(
                "concurrency {concurrency}{web} needs about {need} file descriptors but the limit is {soft} (hard limit {}); \
                 lower --concurrency to at most {} or raise the limit (ulimit -n, or LimitNOFILE= in systemd)",
                lim.rlim_max,
                soft.saturating_sub(FD_RESERVE + server)
            ));
        }
        Ok(soft)
    }
    #[cfg(not(unix))]
    {
        let _ = (concurrency, server_connections);
        Ok(u64::MAX)
    }
}
