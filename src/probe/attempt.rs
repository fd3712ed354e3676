//! One attempt of a check: its deadline, the time spent per phase, and the
//! two error types of the probe.
//!
//! The protocol steps (dial, TLS, SOCKS, CONNECT, request, body) do not know
//! which [`Phase`] they run in: the same TLS handshake is `proxy_tls` or
//! `tls`, and the body checks run after the body is read. So a step fails
//! with a [`StepError`] (reason and message), and [`Attempt::phase`], which
//! knows the phase, turns it into an [`AttemptError`]: what one attempt
//! reports when it fails, and what the check's result is built from.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{Exit, Phase, Phases, Reason};

/// A failed protocol step: why, and a message safe to show. Carries no
/// phase; [`StepError::at`] (or [`Attempt::phase`]) stamps one on it.
#[derive(Debug)]
pub(crate) struct StepError {
    reason: Reason,
    error: String,
    status_code: Option<u16>,
}

impl StepError {
    pub(crate) fn new(reason: Reason, error: impl Into<String>) -> Self {
        StepError {
            reason,
            error: error.into(),
            status_code: None,
        }
    }

    /// The HTTP status the step failed on (a rejected CONNECT's), kept as
    /// the result's `status_code`.
    pub(crate) fn with_status(mut self, code: u16) -> Self {
        self.status_code = Some(code);
        self
    }

    /// This step's failure as the failure of an attempt in `phase`.
    pub(super) fn at(self, phase: Phase) -> AttemptError {
        AttemptError {
            reason: self.reason,
            phase,
            error: self.error,
            status_code: self.status_code,
        }
    }

    /// The message alone (for a failure outside any attempt).
    pub(crate) fn into_message(self) -> String {
        self.error
    }
}

/// How one attempt failed: a [`StepError`] with the phase it happened in,
/// or a timeout of the attempt's deadline. The last attempt's error becomes
/// the reason, phase and error of an INACTIVE result.
#[derive(Debug)]
pub(super) struct AttemptError {
    pub(super) reason: Reason,
    pub(super) phase: Phase,
    pub(super) error: String,
    /// The HTTP status of the failing step, when it had one of its own
    /// (a rejected CONNECT); otherwise the attempt's last status counts.
    pub(super) status_code: Option<u16>,
}

/// One attempt: its deadline, the time spent per phase (summed over
/// redirect hops), the last HTTP status seen and, with a judge target,
/// what the judge saw of the exit.
pub(super) struct Attempt {
    pub(super) start: Instant,
    deadline: Instant,
    timeout: Duration,
    spent: [Option<Duration>; 6],
    pub(super) last_status: Option<u16>,
    pub(super) exit: Option<Exit>,
}

impl Attempt {
    pub(super) fn new(timeout: Duration) -> Self {
        let start = Instant::now();
        Attempt {
            start,
            deadline: start + timeout,
            timeout,
            spent: [None; 6],
            last_status: None,
            exit: None,
        }
    }

    /// Run one phase under the attempt's deadline and record its duration.
    pub(super) async fn phase<T>(
        &mut self,
        phase: Phase,
        fut: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, AttemptError> {
        let began = Instant::now();
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(Ok(v)) => {
                let slot = &mut self.spent[phase_index(phase)];
                *slot = Some(slot.unwrap_or_default() + began.elapsed());
                Ok(v)
            }
            Ok(Err(f)) => Err(f.at(phase)),
            Err(_) => Err(AttemptError {
                reason: Reason::Timeout,
                phase,
                error: format!(
                    "timed out after {} ms during {phase}",
                    self.timeout.as_millis()
                ),
                status_code: None,
            }),
        }
    }

    /// The time spent per phase, and `total` as the whole attempt.
    pub(super) fn phases(&self, total: Duration) -> Phases {
        let mut p = Phases::default();
        for phase in Phase::ALL {
            if let Some(d) = self.spent[phase_index(phase)] {
                p.set(phase, d);
            }
        }
        p.total_ms = Some(total.as_secs_f64() * 1000.0);
        p
    }
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Connect => 0,
        Phase::ProxyTls => 1,
        Phase::Handshake => 2,
        Phase::Tls => 3,
        Phase::FirstByte => 4,
        Phase::Body => 5,
    }
}
