//! The guest's stdout and stderr: kept in memory up to a limit, past which writes fail and the
//! run is marked as having flooded its output.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// One output stream of a run; clones share the buffer.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
    overflowed: Arc<AtomicBool>,
}

impl CappedOutput {
    pub(crate) fn new(capacity: usize) -> Self {
        CappedOutput { buffer: Arc::default(), capacity, overflowed: Arc::default() }
    }

    /// What was written, as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    /// Whether a write went past the capacity.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let mut buffer = self.buffer.lock().unwrap();
        let room = self.capacity - buffer.len();
        if bytes.len() > room {
            // Keep what fits, so the output up to the limit can still be shown.
            buffer.extend_from_slice(&bytes[..room]);
            self.overflowed.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("the output limit was reached")));
        }
        buffer.extend_from_slice(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
