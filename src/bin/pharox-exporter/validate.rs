//! `validate`: check a config file and read its whole inventory (every
//! shard) without checking anything or writing anywhere; exit 1 when an
//! entry is malformed.

use std::process::ExitCode;

use anyhow::Result;

use pharox_exporter::source_spec;
use pharox_exporter::{ReadMode, Shard, Source, SourceSpec};

use crate::cli::{CommonArgs, RunArgs};

pub(crate) async fn run(common: &CommonArgs) -> Result<ExitCode> {
    let cfg = common.load(&RunArgs::default())?;
    // An unreadable geolocation database would stop the exporter at start.
    pharox_exporter::open_geo(&cfg)?;
    let name = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "flags".into());
    let Some(spec) = source_spec(&cfg) else {
        println!("{name}: config OK; no inventory configured");
        return Ok(ExitCode::SUCCESS);
    };
    // Read only (no lease cleanup), and every shard's entries: validation
    // is about the whole inventory, whichever replica runs it.
    let read = Source::open(spec.clone())?
        .read(Shard::default(), ReadMode::ReadOnly)
        .await?;
    for e in &read.errors {
        eprintln!("error: {e}");
    }
    crate::inventory::warn_duplicates(&read);
    match &spec {
        SourceSpec::PharoxDb(_) => println!(
            "{name}: config OK; postgres inventory: {} proxies, {} malformed rows",
            read.proxies.len(),
            read.malformed()
        ),
        SourceSpec::File { path, .. } => println!(
            "{name}: config OK; inventory {}: {} proxies, {} malformed entries, {} duplicates",
            path.display(),
            read.proxies.len(),
            read.malformed(),
            read.duplicates
        ),
    }
    Ok(if read.malformed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
