//! ICE over one shared UDP port: every peer connection of the SFU sends and receives through a
//! single socket, and incoming datagrams are demultiplexed to the right connection.
//!
//! webrtc 0.21 binds its own socket per connection, but hands every socket it binds to its
//! `Runtime::wrap_udp_socket`. [`MuxRuntime`] is a per-connection runtime that delegates
//! everything to Tokio except that hook: it drops the connection's own socket and returns a
//! [`MuxSocket`], a virtual socket fed by the shared [`UdpMux`]. Datagrams are routed by the
//! local ICE username fragment found in STUN binding requests (each connection is built with a
//! known ufrag), then by the remote address learned from that request; STUN responses to our own
//! requests (server-reflexive discovery) are routed by transaction id. The connection still
//! believes it owns the ephemeral address it bound, so candidates it gathers carry that port;
//! the session rewrites them to the shared port before signalling (see `sdp_rewrite`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::backoff::Backoff;
use crate::fastpath::path::SendPath;
use crate::stun::{classify, Stun};
use crate::tcp_mux::TcpMux;
use webrtc::runtime::{
    AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, RecvMeta, Runtime, TokioRuntime, Transmit,
};

/// Datagrams queued per connection before the newest are dropped.
const CONN_QUEUE: usize = 1024;
/// Receive and send buffer asked for the shared socket (the kernel caps it at `net.core.rmem_max`
/// and `wmem_max`): every speaker's packets and every receiver's RTCP and consent checks arrive
/// on this one socket, and with 1,000 receivers Linux's default 208 KiB overflowed while the
/// receive task waited for a core (docs/benchmarks.md, capacity).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Outstanding STUN transactions remembered for response routing.
const MAX_TRANSACTIONS: usize = 4096;

/// The shared UDP socket and its routing tables.
pub struct UdpMux {
    socket: Arc<tokio::net::UdpSocket>,
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Weak<ConnQueue>>,
    by_addr: HashMap<SocketAddr, Weak<ConnQueue>>,
    by_transaction: HashMap<[u8; 12], Weak<ConnQueue>>,
}

#[derive(Default)]
struct ConnQueue {
    state: Mutex<QueueState>,
    /// The connection's media destination, also learned from what its peer sends.
    path: Arc<SendPath>,
}

#[derive(Default)]
struct QueueState {
    packets: VecDeque<(Vec<u8>, SocketAddr)>,
    waker: Option<Waker>,
}

impl ConnQueue {
    fn push(&self, packet: Vec<u8>, from: SocketAddr) -> bool {
        self.path.note(&packet, from);
        let mut state = self.state.lock().expect("queue lock is never poisoned");
        if state.packets.len() >= CONN_QUEUE {
            return false;
        }
        state.packets.push_back((packet, from));
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        true
    }
}

impl UdpMux {
    /// Binds the shared socket and starts its receive loop.
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<UdpMux>> {
        let socket = Arc::new(tokio::net::UdpSocket::bind(addr).await?);
        {
            let raw = socket2::SockRef::from(socket.as_ref());
            // Best effort: a smaller buffer still works, it only overflows sooner.
            if let Err(err) = raw
                .set_recv_buffer_size(SOCKET_BUFFER_BYTES)
                .and_then(|()| raw.set_send_buffer_size(SOCKET_BUFFER_BYTES))
            {
                tracing::warn!(error = %err, "ice udp mux: socket buffer size not set");
            }
            tracing::debug!(
                receive = raw.recv_buffer_size().unwrap_or_default(),
                send = raw.send_buffer_size().unwrap_or_default(),
                "ice udp mux socket buffers"
            );
        }
        let mux = Arc::new(UdpMux {
            socket,
            routes: Mutex::new(Routes::default()),
        });
        tokio::spawn(receive_loop(Arc::downgrade(&mux), Arc::clone(&mux.socket)));
        Ok(mux)
    }

    /// The bound address of the shared socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one datagram now, or fails (`WouldBlock` when the send buffer is full): the fast
    /// path's write, which never waits.
    pub fn try_send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.try_send_to(datagram, to)
    }

    fn register(
        self: &Arc<Self>,
        ufrag: &str,
        local_addr: SocketAddr,
        path: Arc<SendPath>,
    ) -> Arc<MuxSocket> {
        let queue = Arc::new(ConnQueue {
            path: Arc::clone(&path),
            ..ConnQueue::default()
        });
        self.routes
            .lock()
            .expect("routes lock is never poisoned")
            .by_ufrag
            .insert(ufrag.to_owned(), Arc::downgrade(&queue));
        Arc::new(MuxSocket {
            mux: Arc::clone(self),
            queue,
            ufrag: ufrag.to_owned(),
            local_addr,
            path,
        })
    }

    fn route(&self, packet: &[u8], from: SocketAddr) -> Option<Arc<ConnQueue>> {
        let mut routes = self.routes.lock().expect("routes lock is never poisoned");
        match classify(packet) {
            Stun::Request {
                local_ufrag: Some(ufrag),
                ..
            } => {
                let queue = routes.by_ufrag.get(ufrag)?.upgrade()?;
                routes.by_addr.insert(from, Arc::downgrade(&queue));
                Some(queue)
            }
            Stun::Other { transaction } => match routes.by_transaction.remove(&transaction) {
                Some(queue) => queue.upgrade(),
                None => routes.by_addr.get(&from)?.upgrade(),
            },
            Stun::Request { .. } | Stun::Media => routes.by_addr.get(&from)?.upgrade(),
        }
    }

    fn note_sent(&self, queue: &Arc<ConnQueue>, packet: &[u8], to: SocketAddr) {
        if let Stun::Request { transaction, .. } = classify(packet) {
            let mut routes = self.routes.lock().expect("routes lock is never poisoned");
            if routes.by_addr.contains_key(&to) {
                return;
            }
            if routes.by_transaction.len() >= MAX_TRANSACTIONS {
                routes
                    .by_transaction
                    .retain(|_, queue| queue.strong_count() > 0);
                if routes.by_transaction.len() >= MAX_TRANSACTIONS {
                    routes.by_transaction.clear();
                }
            }
            routes
                .by_transaction
                .insert(transaction, Arc::downgrade(queue));
        }
    }

    fn unregister(&self, ufrag: &str) {
        let mut routes = self.routes.lock().expect("routes lock is never poisoned");
        // Several sockets of one connection (one per local address) share its ufrag: forget the
        // route only if it led to a socket that is gone.
        if routes
            .by_ufrag
            .get(ufrag)
            .is_some_and(|queue| queue.strong_count() == 0)
        {
            routes.by_ufrag.remove(ufrag);
        }
        routes.by_addr.retain(|_, queue| queue.strong_count() > 0);
        routes
            .by_transaction
            .retain(|_, queue| queue.strong_count() > 0);
    }

    /// Number of remote addresses currently routed (for tests and debugging).
    pub fn routed_addresses(&self) -> usize {
        let routes = self.routes.lock().expect("routes lock is never poisoned");
        routes
            .by_addr
            .values()
            .filter(|q| q.strong_count() > 0)
            .count()
    }
}

async fn receive_loop(mux: Weak<UdpMux>, socket: Arc<tokio::net::UdpSocket>) {
    let mut buf = vec![0u8; 2048];
    let mut backoff = Backoff::new();
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => {
                backoff.succeeded();
                received
            }
            // ICMP errors from vanished peers surface here, one per ICMP message received;
            // they concern one peer only and are paced by the network, so no pause is needed.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            // Anything else may repeat at once: pause (growing) and log rarely, but keep the
            // port alive, since every session of the SFU depends on it.
            Err(err) => {
                let delay = backoff.failed(Instant::now());
                if let Some(suppressed) = delay.log {
                    tracing::error!(error = %err, suppressed, "ice udp mux receive failed");
                }
                tokio::time::sleep(delay.wait).await;
                if mux.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        let Some(mux) = mux.upgrade() else { return };
        if let Some(queue) = mux.route(&buf[..len], from) {
            queue.push(buf[..len].to_vec(), from);
        }
    }
}

/// One connection's view of the shared socket.
pub struct MuxSocket {
    mux: Arc<UdpMux>,
    queue: Arc<ConnQueue>,
    ufrag: String,
    local_addr: SocketAddr,
    /// Where the connection's DTLS and SRTP go (the fast path's destination).
    path: Arc<SendPath>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MuxSocket {
    fn drop(&mut self) {
        // Release the strong reference first so the cleanup below sees the routes as dead.
        self.queue = Arc::new(ConnQueue::default());
        self.mux.unregister(&self.ufrag);
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let result = self
            .mux
            .socket
            .poll_send_to(cx, transmit.contents, transmit.destination);
        if let Poll::Ready(Ok(_)) = &result {
            self.path.note(transmit.contents, transmit.destination);
            self.mux
                .note_sent(&self.queue, transmit.contents, transmit.destination);
        }
        result
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut state = self
            .queue
            .state
            .lock()
            .expect("queue lock is never poisoned");
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let Some((packet, from)) = state.packets.pop_front() else {
                break;
            };
            let len = packet.len().min(bufs[filled].len());
            bufs[filled][..len].copy_from_slice(&packet[..len]);
            let mut m = RecvMeta::default();
            m.addr = from;
            m.len = len;
            m.stride = len.max(1);
            m.dst_ip = Some(self.local_addr.ip());
            meta[filled] = m;
            filled += 1;
        }
        if filled > 0 {
            return Poll::Ready(Ok(filled));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The [`Runtime`] methods that a runtime wrapping Tokio (a field `inner: Arc<TokioRuntime>`) hands
/// on unchanged: `spawn`, `resolve_host`, `now`, `sleep`, `interval` and `block_on`. Written once
/// for [`MuxRuntime`] and the load examples' runtimes, which differ only in how they make sockets;
/// invoke it inside the `impl Runtime for …` block.
#[macro_export]
macro_rules! delegate_runtime_to_inner {
    () => {
        fn spawn(
            &self,
            future: ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send>>,
        ) -> Box<dyn ::webrtc::runtime::JoinHandle> {
            self.inner.spawn(future)
        }

        fn resolve_host<'a>(
            &'a self,
            host: &'a str,
        ) -> ::std::pin::Pin<
            Box<
                dyn ::std::future::Future<Output = ::std::io::Result<Vec<::std::net::SocketAddr>>>
                    + Send
                    + 'a,
            >,
        > {
            self.inner.resolve_host(host)
        }

        fn now(&self) -> ::std::time::Instant {
            self.inner.now()
        }

        fn sleep(
            &self,
            duration: ::std::time::Duration,
        ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send + 'static>> {
            self.inner.sleep(duration)
        }

        fn interval(
            &self,
            period: ::std::time::Duration,
        ) -> Box<dyn ::webrtc::runtime::AsyncInterval> {
            self.inner.interval(period)
        }

        fn block_on(
            &self,
            future: ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + '_>>,
        ) {
            self.inner.block_on(future)
        }
    };
}

/// The per-connection runtime: Tokio, except that UDP sockets come from the shared mux.
#[derive(Clone)]
pub struct MuxRuntime {
    inner: Arc<TokioRuntime>,
    mux: Arc<UdpMux>,
    tcp: Option<Arc<TcpMux>>,
    ufrag: String,
    path: Arc<SendPath>,
}

impl fmt::Debug for MuxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxRuntime")
            .field("ufrag", &self.ufrag)
            .finish()
    }
}

impl MuxRuntime {
    /// A runtime for the connection whose local ICE ufrag is `ufrag`; its UDP sends are noted
    /// in `path`.
    pub fn new(
        mux: Arc<UdpMux>,
        tcp: Option<Arc<TcpMux>>,
        ufrag: String,
        path: Arc<SendPath>,
    ) -> Self {
        Self {
            inner: Arc::new(TokioRuntime),
            mux,
            tcp,
            ufrag,
            path,
        }
    }
}

impl Runtime for MuxRuntime {
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let local_addr = socket.local_addr()?;
        drop(socket);
        Ok(self
            .mux
            .register(&self.ufrag, local_addr, Arc::clone(&self.path)))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        match &self.tcp {
            Some(tcp) => {
                let local_addr = listener.local_addr()?;
                drop(listener);
                Ok(tcp.register(&self.ufrag, local_addr))
            }
            None => self.inner.wrap_tcp_listener(listener),
        }
    }

    fn connect_tcp<'a>(
        &'a self,
        _remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        // The SFU only accepts ICE-TCP on its shared port; it never dials out to clients.
        Box::pin(async { Err(io::Error::other("ice-tcp is passive on the sfu")) })
    }

    delegate_runtime_to_inner!();

    fn name(&self) -> &'static str {
        "tokio-ice-mux"
    }
}
