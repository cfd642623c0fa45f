//! Asynchronous fetches: a small pool of worker threads runs
//! [`crate::Pager::prefetch`] requests while the caller computes; a
//! [`Ticket`] waits for one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, TierError};
use crate::object::ObjectId;
use crate::tier::Tier;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where a prefetch's result lands.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<()>>>,
    done: Condvar,
}

impl Slot {
    fn set(&self, r: Result<()>) {
        *self.result.lock() = Some(r);
        self.done.notify_all();
    }
}

/// A prefetch in flight. Dropping it does not cancel the prefetch.
pub struct Ticket {
    id: ObjectId,
    tier: Tier,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id).field("tier", &self.tier).field("done", &self.is_done()).finish()
    }
}

impl Ticket {
    /// The object being fetched.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The tier it is fetched into.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Whether the prefetch has finished (successfully or not).
    pub fn is_done(&self) -> bool {
        self.slot.result.lock().is_some()
    }

    /// Waits up to `timeout`; returns whether the prefetch has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut r = self.slot.result.lock();
        while r.is_none() {
            if self.slot.done.wait_until(&mut r, deadline).timed_out() {
                return r.is_some();
            }
        }
        true
    }

    /// Waits for the prefetch and returns its outcome: the object has a copy
    /// in the tier (unless evicted since), or the error that prevented it.
    pub fn wait(self) -> Result<()> {
        let mut r = self.slot.result.lock();
        loop {
            if let Some(result) = r.take() {
                return result;
            }
            self.slot.done.wait(&mut r);
        }
    }
}

/// The worker threads.
pub(crate) struct Workers {
    tx: Option<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers.
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            let handle = std::thread::Builder::new().name(format!("memwall-prefetch-{i}")).spawn(move || loop {
                let job = rx.lock().recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => break,
                }
            })?;
            handles.push(handle);
        }
        Ok(Workers { tx: Some(tx), handles })
    }

    /// Queues `work` (fetching `id` into `tier`) and returns its ticket.
    pub(crate) fn submit(
        &self,
        id: ObjectId,
        tier: Tier,
        work: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Ticket {
        let slot = Arc::new(Slot::default());
        let ticket = Ticket { id, tier, slot: slot.clone() };
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or(Err(TierError::WorkerPanic { id, tier }));
            slot.set(result);
        });
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            ticket.slot.set(Err(TierError::Shutdown { id, tier }));
        }
        ticket
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the channel lets each worker finish the queued jobs and
        // exit.
        self.tx.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
