//! Which worker thread is running: each worker keeps its own origin connections, so code shared
//! by all of them (the origin pools) picks its slot by this index. A leaf: it depends on nothing.

use std::cell::Cell;

thread_local! {
    /// The worker thread's index (0 elsewhere).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code (0 off the server's threads).
pub(crate) fn worker_index() -> usize {
    WORKER.with(Cell::get)
}

/// Marks the calling thread as worker `index` (called once, when the worker starts).
pub(crate) fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index));
}
