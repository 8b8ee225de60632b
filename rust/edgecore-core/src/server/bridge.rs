//! The edge between the Rust pipeline and user code (Python handlers and middleware).
//!
//! The core knows nothing of Python: it hands a [`Job`] to a [`Bridge`] and awaits the reply on a
//! `oneshot`. The PyO3 crate implements the bridge with a bounded queue drained by Python worker
//! threads. A full queue refuses the job at once (the pipeline answers 503 with Retry-After); a
//! reply sender dropped without an answer (the handler crashed, or Python went away) is a 500;
//! no reply within the handler timeout is a 504. Tokio threads never wait on the interpreter.

use http::header::{HeaderName, HeaderValue};
use tokio::sync::oneshot;

use crate::http::{Request, Response};

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A route handler: `handler(request, env) -> Response`.
    Route(usize),
    /// A middleware: `handler(request) -> Response | None`.
    Middleware(usize),
}

impl JobKind {
    /// `"route"` or `"middleware"`.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Route(_) => "route",
            JobKind::Middleware(_) => "middleware",
        }
    }

    /// The handler's index.
    pub fn handler(self) -> usize {
        match self {
            JobKind::Route(h) | JobKind::Middleware(h) => h,
        }
    }
}

/// What user code answered.
// Made and moved once per Python call, next to a handler's microseconds: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Reply {
    /// Answer the client with this response.
    Respond(Response),
    /// Middleware only: continue with this (possibly edited or rewritten) request, adding these
    /// fields to whatever answers it (the cache, a handler or the origin).
    Continue(Request, Vec<(HeaderName, HeaderValue)>),
    /// The handler failed (raised, returned the wrong type): 500, with this message logged.
    Failed(String),
}

/// One unit of user-code work.
pub struct Job {
    /// The handler to run.
    pub kind: JobKind,
    /// The request as the pipeline has it (edge info included).
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// Something that runs jobs (implemented by the Python bridge).
pub trait Bridge: Send + Sync {
    /// Queues `job`; false (and the job dropped) when the queue is full.
    fn submit(&self, job: Job) -> bool;
    /// Jobs waiting now (for metrics).
    fn queued(&self) -> usize;
}
