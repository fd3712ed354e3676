//! The standard `process_*` families every Prometheus client library
//! exports (read from `/proc/self` at scrape time, Linux only), and the
//! tokio runtime's own facts (`pharox_exporter_tokio_*`): what the runbook
//! asks an operator to look at when the exporter itself is in doubt.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: USER_HZ, which the
/// kernel fixes at 100 for user space on every architecture Linux runs on
/// (asking `sysconf` would need `unsafe` for the same answer).
const TICKS_PER_SECOND: f64 = 100.0;

/// `process_*`, registered without the `pharox_` prefix.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// What `/proc/self` says, each value `None` when it could not be read.
#[derive(Debug, Default, PartialEq)]
struct Facts {
    cpu_seconds: Option<f64>,
    start_time: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

fn read_facts() -> Facts {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let (cpu_seconds, start_ticks) = parse_stat(&stat);
    // Boot time is fixed while the machine runs: read once, not at every
    // scrape (/proc/stat is the largest of these files on a big host).
    static BOOT: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    let boot = *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| field_after(&s, "btime"))
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| field_after(&status, key).map(|v| v * 1024.0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    Facts {
        cpu_seconds,
        start_time: boot.zip(start_ticks).map(|(b, t)| b + t / TICKS_PER_SECOND),
        resident_bytes: kb("VmRSS:"),
        virtual_bytes: kb("VmSize:"),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64),
        max_fds: limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok()),
    }
}

/// (utime + stime in seconds, starttime in ticks since boot) from
/// `/proc/self/stat`. The command name may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> (Option<f64>, Option<f64>) {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return (None, None);
    };
    // After the name: state is field 3; utime 14, stime 15, starttime 22.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = num(14)
        .zip(num(15))
        .map(|(u, s)| (u + s) / TICKS_PER_SECOND);
    (cpu, num(22))
}

/// The first number after `key` on the line that starts with it.
fn field_after(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = read_facts();
        if let Some(v) = f.cpu_seconds {
            let e = enc.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(e)?;
        }
        for (name, help, value) in [
            (
                "process_open_fds",
                "Number of open file descriptors",
                f.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                f.max_fds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                f.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                f.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                f.start_time,
            ),
        ] {
            if let Some(v) = value {
                let e = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(e)?;
            }
        }
        Ok(())
    }
}

/// `pharox_exporter_tokio_*`: workers and alive tasks of the runtime the
/// exporter runs on (both are plain counters tokio keeps anyway).
#[derive(Debug)]
pub(crate) struct RuntimeCollector(pub(crate) Option<tokio::runtime::Handle>);

impl Collector for RuntimeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let handle = self
            .0
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let Some(h) = handle else {
            return Ok(());
        };
        let m = h.metrics();
        for (name, help, v) in [
            (
                "exporter_tokio_workers",
                "Worker threads of the async runtime",
                m.num_workers(),
            ),
            (
                "exporter_tokio_alive_tasks",
                "Tasks alive in the async runtime (checks in flight, connections, timers)",
                m.num_alive_tasks(),
            ),
        ] {
            let e = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v as i64).encode(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 12345 3133440 362 18446744073709551615";
        let (cpu, start) = parse_stat(stat);
        assert_eq!(cpu, Some(3.0));
        assert_eq!(start, Some(12345.0));
        assert_eq!(parse_stat("garbage"), (None, None));
    }

    #[test]
    fn this_process_has_every_fact() {
        let f = read_facts();
        for (name, v) in [
            ("cpu", f.cpu_seconds),
            ("start", f.start_time),
            ("rss", f.resident_bytes),
            ("vsize", f.virtual_bytes),
            ("open_fds", f.open_fds),
            ("max_fds", f.max_fds),
        ] {
            // A short test may not have used a whole clock tick of CPU yet.
            let min = if name == "cpu" {
                0.0
            } else {
                f64::MIN_POSITIVE
            };
            assert!(v.is_some_and(|v| v >= min), "{name}: {v:?}");
        }
        let start = f.start_time.unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start}"
        );
        assert_eq!(field_after("VmRSS:\t 2184 kB\n", "VmRSS:"), Some(2184.0));
    }
}
