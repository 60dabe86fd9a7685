//! A client's socket that acknowledges what it reads at once while the connection is young.
//!
//! The OpenSSH client sets TCP_NODELAY only for sessions with a terminal, so for `ssh gw list`
//! Nagle's algorithm holds each small packet back until everything it sent before is
//! acknowledged. During the key exchange the client sends KEXINIT, then (once it has ours)
//! KEX_ECDH_INIT, with nothing from us in between to carry the acknowledgement of KEXINIT; Linux,
//! which sees a request-reply connection, delays that acknowledgement by its delayed-ACK timer
//! (40 ms), and KEX_ECDH_INIT waits that long in the client's kernel. It happened on about half
//! of all connections (OpenSSH's sshd has the same stall on every one), adding 40 ms to a 13 ms
//! `ssh gw whoami`. Asking for an immediate acknowledgement (TCP_QUICKACK) after each read sends
//! the pending one at once. The kernel clears the flag by itself, so it is set again on every
//! read, but only for the first reads: the handshake and login, where the client waits on its
//! own packets; later an acknowledgement rides on the gateway's replies or on the data it sends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads after which acknowledgements are left to the kernel again: enough for the version
/// exchange, key exchange, login and a first channel, which take about a dozen.
const QUICK_READS: u32 = 32;

pub struct QuickAck {
    inner: TcpStream,
    reads_left: u32,
}

impl QuickAck {
    pub fn new(inner: TcpStream) -> Self {
        QuickAck {
            inner,
            reads_left: QUICK_READS,
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.reads_left > 0 && matches!(polled, Poll::Ready(Ok(()))) {
            if buf.filled().len() > before {
                self.reads_left -= 1;
                // Best effort: a socket that refuses it only acknowledges later.
                let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
            } else {
                self.reads_left = 0;
            }
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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

    async fn pair() -> (TcpStream, QuickAck) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, QuickAck::new(listener.accept().await.unwrap().0))
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_quick_acks_stop_after_the_first_reads() {
        let (mut client, mut server) = pair().await;
        let mut got = [0u8; 3];
        for i in 0..=QUICK_READS {
            let sent = [i as u8, b'x', 0xff];
            client.write_all(&sent).await.unwrap();
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, sent);
            assert!(server.reads_left < QUICK_READS, "a read counts");
            server.write_all(&got).await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, sent, "the reply comes back unchanged");
        }
        assert_eq!(server.reads_left, 0);
    }

    #[tokio::test]
    async fn the_end_of_the_stream_stops_quick_acks() {
        let (client, mut server) = pair().await;
        drop(client);
        assert_eq!(server.read(&mut [0u8; 8]).await.unwrap(), 0);
        assert_eq!(server.reads_left, 0);
    }
}
