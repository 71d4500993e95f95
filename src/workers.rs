//! Threads kept for short jobs that must each start at once.
//!
//! Why: a read hedges every chunk fetch on a thread of its own, so a slow
//! node can be gone around without waiting for it. Spawning that thread
//! per chunk cost more than the fetch for small files (a cold `cat` of a
//! tree is three spawns per file). Here a job goes to a thread that has
//! finished an earlier one and waits for work, and a new thread is started
//! only when none waits. A job therefore never queues behind another: a
//! fetch stuck on a slow node holds its own thread, never the next job.
//! Threads that have had nothing to do for [`LINGER`] end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How long a thread with nothing to do waits for a job before it ends.
const LINGER: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// Threads waiting for a job, less the jobs sent to them and not yet
    /// taken: a job is sent only after claiming one of these, so every job
    /// in the channel has a thread waiting for it.
    idle: AtomicUsize,
    /// Serialises "claim or start", so two callers cannot both count on
    /// the same waiting thread.
    start: Mutex<()>,
}

static POOL: LazyLock<Pool> = LazyLock::new(Pool::new);

/// Runs `job` on a waiting thread, or on a new one (named `name`) when none
/// waits. Fails only when a thread cannot be started; the job is then
/// dropped unrun and the caller does the work itself.
pub fn run(name: &str, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    POOL.run(name, job)
}

impl Pool {
    fn new() -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            idle: AtomicUsize::new(0),
            start: Mutex::new(()),
        }
    }

    fn run(&'static self, name: &str, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let pool = self;
        let claimed = {
            let _g = pool
                .start
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pool.idle
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        };
        if claimed {
            // The channel outlives every thread (it is static): this cannot
            // fail, and the claimed thread takes it (or another waiting one).
            let _ = pool.tx.send(Box::new(job));
            return Ok(());
        }
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                job();
                worker(pool);
            })
            .map(|_| ())
    }
}

/// A thread's life after its first job: wait, take a job, run it.
fn worker(pool: &'static Pool) {
    loop {
        pool.idle.fetch_add(1, Ordering::AcqRel);
        loop {
            match pool.rx.recv_timeout(LINGER) {
                Ok(job) => {
                    // The sender already took this thread off `idle`.
                    job();
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    // End only if no job is on its way to a waiting thread:
                    // when `idle` is 0, every waiting thread (this one
                    // among them) has a job coming.
                    let _g = pool
                        .start
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if pool
                        .idle
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    /// A pool of its own for each test: the shared one also serves the
    /// reads of tests running beside it.
    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    /// Waits until `n` threads of `pool` wait for work.
    fn wait_idle(pool: &Pool, n: usize) {
        let t0 = Instant::now();
        while pool.idle.load(Ordering::Acquire) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "threads never got back to waiting"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn every_job_runs_and_none_waits_behind_a_stuck_one() {
        let pool = pool();
        // A job that blocks until released holds its thread...
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        pool.run("test-stuck", move || {
            let _ = release_rx.recv();
        })
        .unwrap();
        // ...and the jobs after it still run at once.
        let done = Arc::new(AtomicU32::new(0));
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..50 {
            let (done, tx) = (Arc::clone(&done), tx.clone());
            pool.run("test-job", move || {
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
            })
            .unwrap();
        }
        for _ in 0..50 {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("a job waited behind the stuck one");
        }
        assert_eq!(done.load(Ordering::SeqCst), 50);
        release_tx.send(()).unwrap();
    }

    #[test]
    fn threads_are_reused() {
        let pool = pool();
        // Sequential jobs: after the first, each finds the thread the one
        // before it left waiting.
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..20 {
            let tx = tx.clone();
            pool.run("test-reuse", move || {
                let _ = tx.send(std::thread::current().id());
            })
            .unwrap();
            ids.insert(rx.recv_timeout(Duration::from_secs(5)).unwrap());
            wait_idle(pool, 1);
        }
        assert_eq!(ids.len(), 1, "{} threads for 20 sequential jobs", ids.len());
        // Two at once: the waiting thread takes one, a new one the other.
        let (hold_tx, hold_rx) = crossbeam_channel::bounded::<()>(0);
        for _ in 0..2 {
            let (tx, hold_rx) = (tx.clone(), hold_rx.clone());
            pool.run("test-reuse", move || {
                let _ = tx.send(std::thread::current().id());
                let _ = hold_rx.recv();
            })
            .unwrap();
        }
        let both: std::collections::HashSet<_> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(both.len(), 2, "two jobs at once shared a thread");
        drop(hold_tx);
        wait_idle(pool, 2);
    }
}
