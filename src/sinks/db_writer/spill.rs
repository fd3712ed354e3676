//! Spill files: where results go (JSON lines, one result per line) when the
//! in-memory queue is full, and at shutdown when the database is
//! unreachable; read back, oldest first, when memory is empty.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use chrono::Utc;

use super::batch::Pending;
use crate::pharox_db::{Error, Stats};

/// Lines per spill file: bounds what the writer reads back into memory at once.
const SPILL_SEGMENT_LINES: u64 = 10_000;

/// Spill files: one open segment being appended to, closed ones waiting.
pub(super) struct Spill {
    dir: PathBuf,
    current: Option<(PathBuf, File, u64)>,
    /// Segments complete and waiting to be read back, oldest first.
    pub(super) closed: VecDeque<PathBuf>,
    seq: u64,
    // Held for the life of the sink: a second process on the same directory
    // would read back and delete our files.
    _lock: DirLock,
}

/// Ownership of a spill directory: a `.owner` file holding our PID, removed
/// on drop. A file left by a process that no longer runs (no `/proc/PID`)
/// is taken over, so a crash does not lock the directory forever.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, Error> {
        let path = dir.join(".owner");
        let me = std::process::id();
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(me.to_string().as_bytes())
                        .map_err(|e| Error::Spill(format!("{}: {e}", path.display())))?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    let alive = owner.is_some_and(|pid| {
                        pid == me || Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if alive {
                        return Err(Error::Spill(format!(
                            "{} is in use by another sink (one spill_dir per exporter)",
                            dir.display()
                        )));
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(Error::Spill(format!("{}: {e}", path.display()))),
            }
        }
        Err(Error::Spill(format!("cannot take {}", path.display())))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spill {
    pub(super) fn open(dir: &Path, stats: &Stats) -> Result<Spill, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Spill(format!("creating {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Spill(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("spill-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        let mut leftover = 0u64;
        for f in &files {
            leftover += count_lines(f);
        }
        if leftover > 0 {
            tracing::info!(
                results = leftover,
                files = files.len(),
                "picking up spilled results"
            );
        }
        stats.pending.fetch_add(leftover, Ordering::Relaxed);
        Ok(Spill {
            dir: dir.to_path_buf(),
            current: None,
            closed: files.into(),
            seq: 0,
            _lock: lock,
        })
    }

    pub(super) fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.2 >= SPILL_SEGMENT_LINES)
        {
            self.rotate();
        }
        if self.current.is_none() {
            self.seq += 1;
            // Time first so files from successive runs sort in write order.
            let name = format!(
                "spill-{:020}-{:08}.jsonl",
                Utc::now().timestamp_micros(),
                self.seq
            );
            let path = self.dir.join(name);
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.current = Some((path, f, 0));
        }
        if let Some((_, f, n)) = self.current.as_mut() {
            // One write per line (no userspace buffer) so a crash loses at most a line.
            f.write_all(line)?;
            *n += 1;
        }
        Ok(())
    }

    pub(super) fn rotate(&mut self) {
        if let Some((path, _, _)) = self.current.take() {
            self.closed.push_back(path);
        }
    }
}

impl Spill {
    /// Lines in every segment on disk (closed and open): results safe for the next start.
    pub(super) fn lines(&self) -> u64 {
        self.closed
            .iter()
            .chain(self.current.as_ref().map(|c| &c.0))
            .map(|p| count_lines(p))
            .sum()
    }

    /// Take the oldest segment to read back, closing the open one when
    /// nothing else is waiting.
    pub(super) fn next_segment(&mut self) -> Option<PathBuf> {
        if self.closed.is_empty() {
            self.rotate();
        }
        self.closed.pop_front()
    }
}

fn count_lines(path: &Path) -> u64 {
    File::open(path)
        .map(|f| BufReader::new(f).lines().count() as u64)
        .unwrap_or(0)
}

/// Where the batch being written came from: a spill file is deleted only
/// once all of its lines are committed.
pub(super) struct SpillSegment {
    pub(super) path: PathBuf,
    pub(super) rows: VecDeque<Pending>,
}

impl SpillSegment {
    /// Read a segment back. A line that does not parse (a torn last line
    /// after a crash) is dropped: it was counted as pending at start, so it
    /// moves from `pending` to `dropped_history`.
    pub(super) fn read(path: PathBuf, stats: &Stats) -> SpillSegment {
        let mut rows = VecDeque::new();
        let mut bad = 0u64;
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    match line
                        .ok()
                        .and_then(|l| serde_json::from_str::<Pending>(&l).ok())
                    {
                        Some(p) => rows.push_back(p),
                        None => bad += 1,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, file = %path.display(), "cannot read spill file"),
        }
        if bad > 0 {
            tracing::warn!(lines = bad, file = %path.display(), "unreadable spill lines dropped");
            stats.pending.fetch_sub(
                bad.min(stats.pending.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            stats.dropped_history.fetch_add(bad, Ordering::Relaxed);
        }
        SpillSegment { path, rows }
    }
}

/// Delete a segment whose every line is committed.
pub(super) fn remove_spill_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(error = %e, file = %path.display(), "cannot remove spill file");
    }
}
