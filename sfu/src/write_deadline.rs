//! The two HTTP protections against clients that hold connections without using them (issue 21,
//! finding 2): a **minimum send rate** on every connection and a **per-address connection cap**.
//!
//! - [`DeadlineIo`] wraps a connection's socket. While the server has data the client does not
//!   take (a write is pending because the kernel's send buffer is full), the client must take at
//!   least [`MIN_PROGRESS_BYTES`] within `limits.http_write_timeout`; otherwise the write fails,
//!   the connection ends and the socket is reset (`SO_LINGER` 0), so neither the connection slot
//!   nor the kernel's send buffer stays held. A client that reads nothing while it pipelines
//!   requests (the live probe: 300 requests, a 4 KB receive window, never read) is cut after the
//!   timeout. Idle connections are not affected here: hyper's header read timeout closes an idle
//!   keep-alive connection, and an idle WebSocket is a quiet participant.
//! - [`AddressSlots`] counts live connections per client address (an IPv6 address by its /64,
//!   which one host usually holds whole) so that one address cannot take every connection slot.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// Bytes a client must take within the write timeout while the server has data pending for it:
/// 16 KiB per 10 s at the default is 1.6 KB/s, far below any real link.
pub const MIN_PROGRESS_BYTES: usize = 16 * 1024;

/// A socket whose pending writes must make progress (see the module docs).
pub struct DeadlineIo {
    inner: TcpStream,
    metrics: Arc<Metrics>,
    timeout: Duration,
    /// Armed while a write or flush is pending: when it fires, the client gets cut.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes written since the deadline was (re)armed.
    progress: usize,
    /// Set once the deadline fired; every later write fails at once.
    timed_out: bool,
}

impl DeadlineIo {
    /// Wraps `inner`; pending writes must progress within `timeout`. A cut connection counts in
    /// `sfu_rtc_errors_total{type="http_write_timeout"}`.
    pub fn new(inner: TcpStream, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            metrics,
            timeout,
            deadline: None,
            progress: 0,
            timed_out: false,
        }
    }

    /// Called when a write or flush returned `Pending`: arms the deadline (if not armed) and
    /// fails once it passed.
    fn check_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.timed_out = true;
            self.metrics.record_error("http_write_timeout");
            tracing::debug!("connection reset: the client took no data within the write timeout");
            // Reset instead of a graceful close: the unread data would otherwise keep the socket
            // (and its send buffer) alive in the kernel until the client reads it. A zero linger
            // never blocks on drop (tokio's deprecation is about a non-zero one).
            #[allow(deprecated)]
            let _ = self.inner.set_linger(Some(Duration::ZERO));
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client took no data within the http write timeout",
            )));
        }
        Poll::Pending
    }

    fn wrote(&mut self, bytes: usize) {
        self.progress += bytes;
        if self.progress >= MIN_PROGRESS_BYTES {
            self.progress = 0;
            if let Some(deadline) = self.deadline.as_mut() {
                deadline.as_mut().reset(Instant::now() + self.timeout);
            }
        }
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl DeadlineIo {
    /// What a write of the inner stream means for the deadline: progress restarts it, a write that
    /// cannot proceed is checked against it (and fails once it has passed).
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(written)) => {
                self.wrote(written);
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match self.check_stalled(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                // Everything handed over: nothing is pending any more.
                self.deadline = None;
                self.progress = 0;
                Poll::Ready(result)
            }
            Poll::Pending => self.check_stalled(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The key connections are counted under: an IPv4 address, or an IPv6 address's /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

/// Live connections per client address, capped.
#[derive(Debug)]
pub struct AddressSlots {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
}

impl AddressSlots {
    /// At most `limit` connections per address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or `None` when that address holds `limit` already.
    pub fn try_claim(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = address_key(ip);
        // A poisoned lock means a panic while counting; the counts are still consistent.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Connections `ip` holds now.
    #[cfg(test)]
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_share() {
        let slots = AddressSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.try_claim(a).expect("first");
        let _second = slots.try_claim(a).expect("second");
        assert!(slots.try_claim(a).is_none(), "third from the same address");
        assert!(slots.try_claim(b).is_some(), "another address");
        drop(first);
        assert!(slots.try_claim(a).is_some(), "a freed slot is reusable");
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        let slots = AddressSlots::new(1);
        let _one = slots.try_claim("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(slots
            .try_claim("2001:db8:1:2:ffff::9".parse().unwrap())
            .is_none());
        assert!(slots
            .try_claim("2001:db8:1:3::1".parse().unwrap())
            .is_some());
        let _v4 = slots.try_claim("192.0.2.7".parse().unwrap()).unwrap();
        assert!(slots
            .try_claim("::ffff:192.0.2.7".parse().unwrap())
            .is_none());
        assert_eq!(slots.held_by("192.0.2.7".parse().unwrap()), 1);
    }
}
