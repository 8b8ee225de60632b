//! The structured access log: one JSON line per request (time, client IP, method, path, status,
//! bytes, duration, decision), off by default, to stderr (`-`) or a file (appended).
//!
//! Requests never wait for the disk: lines go through a bounded channel to one writer thread,
//! which flushes whenever the channel runs empty. If the writer falls behind, lines are dropped
//! and counted rather than stalling the pipeline. Nothing is formatted when the log is off.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError};

use crate::error::{Error, Result};

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

/// The log's sending side.
pub struct AccessLog {
    tx: SyncSender<String>,
    /// Lines dropped because the writer fell behind. Relaxed: a statistic.
    dropped: AtomicU64,
}

impl AccessLog {
    /// Opens `target` ("-" for stderr, else a file path, appended) and starts the writer thread.
    pub fn open(target: &str) -> Result<AccessLog> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stderr())
        } else {
            Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)
                    .map_err(|e| Error::config(format!("cannot open the access log {target:?}: {e}")))?,
            )
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("edgecore-access-log".into())
            .spawn(move || {
                let mut w = BufWriter::with_capacity(64 * 1024, out);
                while let Ok(line) = rx.recv() {
                    let _ = writeln!(w, "{line}");
                    loop {
                        match rx.try_recv() {
                            Ok(line) => {
                                let _ = writeln!(w, "{line}");
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                let _ = w.flush();
                                return;
                            }
                        }
                    }
                    let _ = w.flush();
                }
                let _ = w.flush();
            })
            .map_err(|e| Error::config(format!("starting the access log writer: {e}")))?;
        Ok(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues one line.
    pub fn write(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("edgecore-{name}-{}", std::process::id()))
    }

    #[test]
    fn lines_are_appended_in_order_and_reach_the_file() {
        let path = temp("access-log");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = AccessLog::open(path.to_str().unwrap()).unwrap();
        for i in 0..100 {
            log.write(format!("{{\"n\":{i}}}"));
        }
        drop(log); // the writer drains what was queued, flushes and ends
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 101 || std::time::Instant::now() > deadline {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines[0], "earlier", "the file is appended to, not replaced");
                assert_eq!(lines.len(), 101);
                assert_eq!(lines[100], "{\"n\":99}");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn an_unopenable_target_names_itself() {
        let e = AccessLog::open("/nonexistent-dir/x.log").err().unwrap();
        assert!(e.context.contains("/nonexistent-dir/x.log"), "{e}");
    }
}
