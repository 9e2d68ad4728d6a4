//! The threads that make the IdP requests of every device sign-in.

use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A few threads (default stacks) that run the IdP requests of every
/// sign-in, so sign-in threads can be small. At most as many requests as it has threads
/// run at once; the rest queue (each is bounded by the HTTP timeouts).
pub struct IdpPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl IdpPool {
    pub fn new(threads: usize) -> std::io::Result<IdpPool> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("device-idp".into())
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panic in one request must not take a worker away.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("device sign-in: an IdP request panicked");
                        }
                    }
                })?;
        }
        Ok(IdpPool { jobs })
    }

    /// Runs `f` on a worker and waits for its result (`None`: it panicked or
    /// the pool is gone).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.recv().ok()
    }
}
