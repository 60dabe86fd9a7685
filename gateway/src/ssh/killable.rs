//! A socket the gateway can cut: once its token fires, reads and writes fail, so the russh
//! session that owns it (in a task of its own, out of the gateway's reach) ends and drops it.
//! A disconnect through russh's handle cannot do that before login: russh holds such
//! messages back until the key exchange is done, which a silent client never finishes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Killable<S> {
    inner: S,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Killable<S> {
    pub fn new(inner: S, kill: CancellationToken) -> Self {
        Killable {
            inner,
            killed: Box::pin(kill.cancelled_owned()),
        }
    }

    /// Ready once the token fired (and registers the waker until then).
    fn cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.killed.as_mut().poll(cx).is_ready()
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the gateway")
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cut(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.cut(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_blocked_read_fails_once_the_token_fires() {
        let (a, mut b) = tokio::io::duplex(64);
        let kill = CancellationToken::new();
        let mut cut = Killable::new(a, kill.clone());
        b.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        cut.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
        let reader = tokio::spawn(async move {
            let mut more = [0u8; 1];
            cut.read(&mut more).await
        });
        tokio::task::yield_now().await;
        kill.cancel();
        let err = reader.await.expect("join").expect_err("cut");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
