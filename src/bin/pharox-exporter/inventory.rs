//! The inventory as one-shot commands read it: [`Source::read`] (the same
//! read the exporter does before a sweep), with what it skipped on stderr.

use anyhow::{bail, Result};

use pharox_exporter::source_spec;
use pharox_exporter::Config;
use pharox_exporter::{InventoryRead, ReadMode, Source};

/// Read this shard's share of the configured inventory for a one-shot run:
/// expired leases are released as the exporter does, and a lease burst,
/// which pauses the exporter's sweeps, is only a warning here (the run was
/// asked for explicitly).
pub(crate) async fn read(cfg: &Config) -> Result<InventoryRead> {
    let Some(spec) = source_spec(cfg) else {
        bail!("no inventory: pass --inventory FILE or set inventory.path in the config file");
    };
    let read = Source::open(spec)?
        .read(cfg.inventory.shard, ReadMode::OneShot)
        .await?;
    if let Some(b) = read.paused {
        eprintln!(
            "warning: lease acquisitions are bursting ({:.1}/s); sweeping anyway (one-shot run)",
            b.rate
        );
    }
    if read.skipped_rows > 0 {
        eprintln!(
            "warning: {} proxy rows skipped as malformed (see the log)",
            read.skipped_rows
        );
    }
    for e in &read.errors {
        eprintln!("warning: {e}");
    }
    if cfg.inventory.shard.count > 1 {
        eprintln!(
            "shard {}: checking {} of {} proxies",
            cfg.inventory.shard,
            read.proxies.len(),
            read.proxies.len() + read.other_shards
        );
    }
    warn_duplicates(&read);
    Ok(read)
}

/// Each duplicate listed with its line, then how many more there were.
pub(crate) fn warn_duplicates(read: &InventoryRead) {
    for d in &read.first_duplicates {
        eprintln!("warning: {d}");
    }
    let more = read.duplicates.saturating_sub(read.first_duplicates.len());
    if more > 0 {
        eprintln!("warning: {more} more duplicate inventory entries (same id) ignored");
    }
}
