//! Log output batched off the request path. Writing every log line straight to stderr costs a
//! `write` system call per review, and the stderr lock makes the runtime's worker threads wait
//! for each other (the load benchmark showed one futex wait per request and a third more CPU
//! per request than with logging off). Lines are appended to a shared buffer instead (a short
//! memcpy under a lock) and a background thread writes the buffer out every
//! [`FLUSH_INTERVAL`], or sooner once it holds [`FLUSH_AT`] bytes, in one system call.
//!
//! Why not tracing-appender's non-blocking writer: it hands each line to its worker thread over
//! a channel and wakes that thread for it, and the worker spins and `sched_yield`s on the empty
//! channel before it sleeps. Under load that was half a `write` and 0.4 `sched_yield` per
//! request, and 8 µs more server CPU per request than this buffer (docs/benchmarks.md).
//!
//! A line reaches stderr at most [`FLUSH_INTERVAL`] late; the [`LogGuard`] flushes what is
//! left when the program ends. If stderr stops draining, at most [`MAX_BUFFERED`] bytes wait
//! and further lines are dropped and counted, so a stuck log pipe cannot exhaust memory or
//! stall reviews.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffered bytes that wake the writer early (a few hundred lines).
pub const FLUSH_AT: usize = 64 * 1024;
/// Buffered bytes beyond which lines are dropped.
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves at worst a partial line.
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`MakeWriter`] for `tracing_subscriber` that batches lines for a background writer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Flushes the remaining lines and stops the background writer when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the background thread writing to `out`.
pub fn batched(out: impl Write + Send + 'static) -> std::io::Result<(BatchedWriter, LogGuard)> {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn({
            let shared = shared.clone();
            move || write_loop(&shared, out)
        })?;
    Ok((
        BatchedWriter {
            shared: shared.clone(),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(FLUSH_AT * 2);
    loop {
        let stopping = {
            let mut buf = shared.lock();
            if buf.len() < FLUSH_AT && !shared.stop.load(Ordering::Acquire) {
                buf = shared
                    .wake
                    .wait_timeout(buf, FLUSH_INTERVAL)
                    .map(|(b, _)| b)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            std::mem::swap(&mut *buf, &mut spare);
            shared.stop.load(Ordering::Acquire)
        };
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                spare,
                "{dropped} log lines dropped: the log output did not keep up"
            );
        }
        if !spare.is_empty() {
            // Nowhere to report a failing stderr; the lines are lost either way.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if spare.capacity() > MAX_BUFFERED {
                spare.shrink_to(FLUSH_AT * 2);
            }
        }
        if stopping && shared.lock().is_empty() {
            return;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's output: tracing-subscriber formats a whole line, then writes it in one call.
pub struct LineSink<'a> {
    shared: &'a Shared,
}

impl Write for LineSink<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.shared.lock();
        if buf.len() + data.len() > MAX_BUFFERED {
            drop(buf);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(data.len());
        }
        buf.extend_from_slice(data);
        let full = buf.len() >= FLUSH_AT;
        drop(buf);
        if full {
            self.shared.wake.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that hands what it gets to a channel.
    struct Sink(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_and_the_guard_flushes_the_rest() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (writer, guard) = batched(Sink(tx)).expect("thread");
        for i in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        let out: Vec<u8> = rx.iter().flatten().collect();
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, l)| *l == format!("line {i}"))
        );
    }

    #[test]
    fn a_line_is_written_within_the_flush_interval_without_a_guard_drop() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (writer, _guard) = batched(Sink(tx)).expect("thread");
        writer.make_writer().write_all(b"hello\n").expect("write");
        // Waits on the writer thread's output, bounded far above FLUSH_INTERVAL.
        let got = rx.recv_timeout(Duration::from_secs(10)).expect("flushed");
        assert_eq!(got, b"hello\n");
    }

    #[test]
    fn lines_beyond_the_cap_are_dropped_and_counted() {
        // No writer thread: the buffer only fills, as when stderr stopped draining.
        let writer = BatchedWriter {
            shared: Arc::new(Shared {
                buf: Mutex::new(Vec::new()),
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            }),
        };
        let mut w = writer.make_writer();
        w.write_all(&vec![b'x'; MAX_BUFFERED - 4]).expect("fits");
        w.write_all(b"one more\n").expect("dropped, not an error");
        w.write_all(b"ok\n").expect("still fits");
        assert_eq!(writer.shared.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(writer.shared.lock().len(), MAX_BUFFERED - 1);
    }
}
