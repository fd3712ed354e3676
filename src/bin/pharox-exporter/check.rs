//! `check URL... [--inventory FILE]`: check proxies now and print a table or
//! JSON lines; exit 3 when any is down.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use pharox_exporter::redact_entry;
use pharox_exporter::{run_sweep, SweepParams};
use pharox_exporter::{CheckResult, Config, Proxy, PHAROX_DEFAULT_TARGET};

use crate::cli::{CommonArgs, Output, RunArgs};
use crate::output::{self, ResultLine};

pub(crate) async fn run(
    urls: Vec<String>,
    output: Output,
    common: &CommonArgs,
) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    let mut proxies: Vec<Arc<Proxy>> = Vec::new();
    let mut bad = 0;
    for u in &urls {
        match pharox_exporter::parse_proxy_url(u) {
            Ok(p) => proxies.push(Arc::new(p)),
            Err(e) => {
                eprintln!("warning: argument {:?}: {e}; skipped", redact_entry(u));
                bad += 1;
            }
        }
    }
    if cfg.inventory.path.is_some() || cfg.db.is_some() {
        let read = crate::inventory::read(&cfg).await?;
        proxies.extend(read.proxies);
    }
    if proxies.is_empty() {
        bail!(
            "nothing to check: give proxy URLs or --inventory FILE{}",
            if bad > 0 {
                " (all arguments were invalid)"
            } else {
                ""
            }
        );
    }
    warn_if_default_target(&cfg, &proxies);
    // The exporter's guard: a concurrency the fd limit cannot hold would
    // blame "Too many open files" on the proxies. Only sockets that can be
    // open at once count (never more than there are proxies).
    pharox_exporter::ensure_fd_limit(cfg.sweep.concurrency.min(proxies.len()), 0)
        .map_err(anyhow::Error::msg)?;
    // Arguments first, then the inventory, each in the order given. Keyed by
    // the Arc, not the id: two arguments that differ only in their password
    // share a derived id, and must still print in the order typed.
    let order: HashMap<*const Proxy, usize> = proxies
        .iter()
        .enumerate()
        .map(|(i, p)| (Arc::as_ptr(p), i))
        .collect();
    let results = Arc::new(Mutex::new(Vec::with_capacity(proxies.len())));
    let sink = results.clone();
    let geo = pharox_exporter::open_geo(&cfg)?;
    let params = SweepParams::new(cfg.sweep.concurrency, 0.0, None).geo(geo);
    run_sweep(proxies.into(), cfg.options.clone(), params, move |p, r| {
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((p.clone(), r));
    })
    .await;
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    // Results arrive in completion order; print them in the order asked.
    results.sort_by_key(|(p, _)| order.get(&Arc::as_ptr(p)).copied());
    print(&results, output)?;
    let any_down = results.iter().any(|(_, r)| !r.is_up());
    Ok(if any_down {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Say so when a check would go to pharox's default target, a third-party
/// service, because neither `--target-url` nor the config names one.
fn warn_if_default_target(cfg: &Config, proxies: &[Arc<Proxy>]) {
    let default = proxies
        .iter()
        .any(|p| cfg.options.for_proxy(p).target_url.as_str() == PHAROX_DEFAULT_TARGET);
    if default {
        eprintln!(
            "note: no target configured: checking through each proxy against {PHAROX_DEFAULT_TARGET} \
             (a third-party service; pharox's default); set --target-url or defaults.target_url"
        );
    }
}

fn print(results: &[(Arc<Proxy>, CheckResult)], output: Output) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            for (p, r) in results {
                writeln!(out, "{}", ResultLine::new(p, r).to_json())?;
            }
        }
        Output::Table => {
            let rows: Vec<(&Proxy, &CheckResult)> =
                results.iter().map(|(p, r)| (p.as_ref(), r)).collect();
            write!(out, "{}", output::table(&rows))?;
        }
    }
    out.flush()?;
    Ok(())
}
