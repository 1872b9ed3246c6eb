//! Pull progress on a terminal: one line on stderr, redrawn a few times a
//! second, only when stderr is a tty.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub layers: AtomicU64,
    pub layers_done: AtomicU64,
    stop: AtomicBool,
}

/// Draws progress until dropped.
pub struct ProgressView {
    state: Arc<Progress>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn mb(b: u64) -> f64 {
    b as f64 / 1_000_000.0
}

impl ProgressView {
    /// Start drawing for `label` if `enabled` and stderr is a terminal.
    pub fn start(label: String, state: Arc<Progress>, enabled: bool) -> Self {
        let task = (enabled && std::io::stderr().is_terminal()).then(|| {
            let s = state.clone();
            tokio::spawn(async move {
                let t0 = Instant::now();
                loop {
                    let stop = s.stop.load(Ordering::Relaxed);
                    let done = s.done.load(Ordering::Relaxed);
                    let secs = t0.elapsed().as_secs_f64().max(0.001);
                    let line = format!(
                        "\r\x1b[K{label}: {:.1}/{:.1} MB, {}/{} layers, {:.1} MB/s",
                        mb(done),
                        mb(s.total.load(Ordering::Relaxed)),
                        s.layers_done.load(Ordering::Relaxed),
                        s.layers.load(Ordering::Relaxed),
                        mb(done) / secs
                    );
                    {
                        let mut e = std::io::stderr().lock();
                        let _ = e.write_all(line.as_bytes());
                        if stop {
                            let _ = writeln!(e);
                        }
                    }
                    if stop {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        ProgressView { state, task }
    }

    pub async fn finish(mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}
