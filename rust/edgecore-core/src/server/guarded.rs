//! The client's bytes, read through the framing guard ([`crate::http::framing`]) before hyper
//! parses them: what hyper tolerates and a smuggler relies on (bare LF, `Content-Length` with
//! `Transfer-Encoding`, `5 \r\n` chunk sizes, control bytes in chunk extensions) is refused: a
//! head by hyper's own 400, a body by a failed read that the pipeline answers with 400. It sits above TLS, on
//! the bytes hyper reads, and passes HTTP/2 through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use std::sync::Arc;

use super::conn::ConnState;
use crate::http::framing::{FrameGuard, Outcome};

/// A connection's stream with the framing guard on its read side.
pub(crate) struct Guarded<T> {
    io: T,
    guard: FrameGuard,
    /// Where a refusal's reason goes, for the connection's log line.
    state: Arc<ConnState>,
}

impl<T> Guarded<T> {
    pub(crate) fn new(io: T, state: Arc<ConnState>) -> Self {
        Guarded {
            io,
            guard: FrameGuard::new(),
            state,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.state.upgraded.load(std::sync::atomic::Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        // A refusal has already been written into the bytes, for hyper to answer; its reason is
        // kept for the log line written when the connection ends.
        match this.guard.inspect(&mut buf.filled_mut()[before..]) {
            Outcome::Ok => {}
            Outcome::HeadRefused(why) | Outcome::BodyRefused(why) => {
                let _ = this.state.refused.set(why);
            }
            Outcome::VersionUnsupported => {
                this.state
                    .version_unsupported
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
