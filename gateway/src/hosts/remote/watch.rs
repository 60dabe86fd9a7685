//! A host connection's socket, watched, so that a connection whose link is gone cannot hang.
//!
//! russh's client runs one loop per connection that reads, writes and sends keepalives in
//! turn. While the link to a host is lost with data queued (an upload), the socket's send
//! buffer fills and the loop waits in a write that never ends: its keepalive timer is never
//! looked at again, nothing it is asked to do (a disconnect included) is done, and every session
//! on the connection hangs until TCP gives up, a quarter of an hour later. Two things end that:
//!
//! - the kernel's `TCP_USER_TIMEOUT` ([`limit_unacknowledged`]): bytes handed to the socket
//!   and not acknowledged by the host within the stall limit break the connection;
//! - [`Watched`], around the socket: a write that finds the socket full and stays there for the
//!   stall limit fails; so does a read that waits while the host has not said a word for the
//!   stall limit since bytes were sent to it (on a live link that cannot be: russh asks a quiet
//!   host with a keepalive after `keepalive_interval`, which is shorter, and the host answers);
//!   and a connection that is retired ([`Cut`]) fails its pending and next reads and writes at
//!   once. Any of these ends russh's loop, which ends every channel of the connection as lost
//!   (their sessions say the host connection was lost).
//!
//! Silence alone is not a stall: while russh's loop is held up elsewhere (a channel whose
//! reader is behind), it neither reads nor writes, and the host has nothing to answer.
//!
//! It must not decide anything else: when the stall limit is crossed is the only judgement here.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Ends one connection's socket from outside: a retired connection, or one found stuck.
#[derive(Clone, Debug, Default)]
pub struct Cut {
    token: CancellationToken,
    why: Arc<std::sync::Mutex<Option<String>>>,
}

impl Cut {
    /// Fails the socket's reads and writes from now on (the first reason given is kept).
    pub fn cut(&self, why: &str) {
        if let Ok(mut kept) = self.why.lock()
            && kept.is_none()
        {
            *kept = Some(why.to_owned());
        }
        self.token.cancel();
    }

    pub fn is_cut(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the socket was cut, if it was.
    pub fn why(&self) -> Option<String> {
        self.why.lock().ok().and_then(|w| w.clone())
    }
}

/// A socket whose writes may not wait longer than the stall limit, and which a [`Cut`] ends.
pub struct Watched<S> {
    inner: S,
    stall_limit: Duration,
    /// Armed when a write finds the socket full; disarmed by any byte the socket takes.
    stalled: Option<Pin<Box<Sleep>>>,
    /// When bytes were first sent to the host after the last bytes read from it: the host owes
    /// an answer since then (at the latest to the keepalive russh sends a quiet host).
    unanswered_since: Option<tokio::time::Instant>,
    /// Armed while a read waits and the host owes an answer, for when it is overdue.
    silent: Option<Pin<Box<Sleep>>>,
    cut: Cut,
    /// One waiter per direction: russh reads and writes the socket from two halves at once,
    /// and each must be woken by a cut.
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, stall_limit: Duration, cut: Cut) -> Watched<S> {
        Watched {
            inner,
            stall_limit,
            stalled: None,
            unanswered_since: None,
            silent: None,
            read_cut: Box::pin(cut.token.clone().cancelled_owned()),
            write_cut: Box::pin(cut.token.clone().cancelled_owned()),
            cut,
        }
    }

    fn cut_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            self.cut
                .why()
                .unwrap_or_else(|| "the connection was closed".into()),
        )
    }
}

/// Sets the kernel's limit on how long bytes sent to the host may stay unacknowledged: past
/// it, the connection fails (Linux; elsewhere only [`Watched`]'s own limit applies).
pub fn limit_unacknowledged(stream: &tokio::net::TcpStream, limit: Duration) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket2::SockRef::from(stream).set_tcp_user_timeout(Some(limit))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (stream, limit);
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.cut_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.unanswered_since = None;
                    self.silent = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(since) = self.unanswered_since else {
                    return Poll::Pending;
                };
                let due = since + self.stall_limit;
                let silent = self
                    .silent
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if silent.deadline() != due {
                    silent.as_mut().reset(due);
                }
                if silent.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let why = format!(
                    "the host has not answered for {} s",
                    self.stall_limit.as_secs_f32()
                );
                self.cut.cut(&why);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.cut_error()));
        }
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.stalled = None;
                    if self.unanswered_since.is_none() {
                        self.unanswered_since = Some(tokio::time::Instant::now());
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let limit = self.stall_limit;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if stalled.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let why = format!(
                    "nothing could be sent to the host for {} s",
                    limit.as_secs_f32()
                );
                self.cut.cut(&why);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.cut_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMIT: Duration = Duration::from_millis(300);
    /// A bound on every wait below: past it the test fails instead of hanging.
    const BOUND: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_stall_limit() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let cut = Cut::default();
        let mut watched = Watched::new(ours, LIMIT, cut.clone());
        let written = tokio::time::timeout(BOUND, watched.write_all(&[7u8; 64 * 1024]))
            .await
            .expect("the stalled write ended");
        let err = written.expect_err("a write nobody reads fails");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(cut.is_cut(), "a stalled socket is cut for good");
        assert!(
            cut.why()
                .unwrap_or_default()
                .contains("nothing could be sent")
        );
    }

    #[tokio::test]
    async fn a_write_that_drains_slowly_is_not_stalled() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let cut = Cut::default();
        let mut watched = Watched::new(ours, LIMIT, cut.clone());
        // The peer takes a little at a time, each well within the limit, for much longer than
        // the limit in all: progress, however slow, is not a stall.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < 16 * 1024 {
                tokio::time::sleep(LIMIT / 10).await;
                match theirs.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        });
        tokio::time::timeout(BOUND, watched.write_all(&[1u8; 16 * 1024]))
            .await
            .expect("the write ended")
            .expect("a slow peer is not a stall");
        drop(watched);
        assert!(!cut.is_cut());
        let got = tokio::time::timeout(BOUND, reader)
            .await
            .expect("reader ended")
            .expect("reader task");
        assert_eq!(got, 16 * 1024);
    }

    #[tokio::test]
    async fn a_host_that_never_answers_what_it_was_sent_is_stalled() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let cut = Cut::default();
        let (mut reader, mut writer) = tokio::io::split(Watched::new(ours, LIMIT, cut.clone()));
        // Quiet both ways: no one owes anything, however long.
        let mut buf = [0u8; 16];
        let quiet = tokio::time::timeout(LIMIT * 3, reader.read(&mut buf)).await;
        assert!(quiet.is_err(), "a quiet connection is not stalled");
        // Bytes go out (taken by the peer's side), and no answer ever comes.
        writer.write_all(b"keepalive").await.expect("write");
        let mut got = [0u8; 9];
        theirs.read_exact(&mut got).await.expect("the peer got it");
        let read = tokio::time::timeout(BOUND, reader.read(&mut buf))
            .await
            .expect("the read ended");
        let err = read.expect_err("an unanswered host is stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(cut.why().unwrap_or_default().contains("has not answered"));
    }

    #[tokio::test]
    async fn a_host_that_answers_is_not_stalled() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let cut = Cut::default();
        let (mut reader, mut writer) = tokio::io::split(Watched::new(ours, LIMIT, cut.clone()));
        // The peer echoes: each question answered at once, for much longer than the limit.
        let echo = tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(theirs);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let mut buf = [0u8; 4];
        for _ in 0..20 {
            writer.write_all(b"ping").await.expect("write");
            tokio::time::timeout(BOUND, reader.read_exact(&mut buf))
                .await
                .expect("the answer came")
                .expect("answered");
            tokio::time::sleep(LIMIT / 4).await;
        }
        assert!(!cut.is_cut());
        drop((reader, writer));
        echo.abort();
    }

    #[tokio::test]
    async fn a_cut_ends_a_pending_read_and_every_later_write() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let cut = Cut::default();
        let (mut reader, mut writer) =
            tokio::io::split(Watched::new(ours, Duration::from_secs(3600), cut.clone()));
        let pending = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            reader.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        cut.cut("the host was judged unreachable");
        cut.cut("a later reason");
        let read = tokio::time::timeout(BOUND, pending)
            .await
            .expect("the read was woken")
            .expect("read task");
        let err = read.expect_err("a cut read fails");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(err.to_string(), "the host was judged unreachable");
        let err = writer.write_all(b"x").await.expect_err("a cut write fails");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
    }
}
