//! The background runtime: one small tokio runtime for work that outlives a call from Python
//! (JWKS refresh, Redis connections used through the library API, the server's purge
//! broadcast). The server runs its own runtimes, one per worker thread; this one exists so the
//! library works without a server.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

static BACKGROUND: OnceLock<Runtime> = OnceLock::new();

/// The shared background runtime (two worker threads, named `edgecore-bg`).
pub fn background() -> &'static Runtime {
    BACKGROUND.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("edgecore-bg")
            .enable_all()
            .build()
            .expect("starting the edgecore background runtime")
    })
}

/// Runs `fut` to completion from synchronous code.
///
/// Must not be called from inside a tokio runtime (it would block a worker); callers on a runtime
/// use the async API instead. Returns None in that case rather than panicking.
pub fn block_on<F: std::future::Future>(fut: F) -> Option<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    Some(background().block_on(fut))
}
