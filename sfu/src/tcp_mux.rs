//! ICE-TCP over one shared port: the SFU accepts every ICE-TCP connection (RFC 6544, framed as
//! RFC 4571) on a single listener, reads the first framed STUN binding request, and hands the
//! connection to the peer connection whose local ufrag the request names.
//!
//! Like the UDP mux this plugs in through the per-connection runtime: `wrap_tcp_listener` drops
//! the connection's own listener and returns a [`MuxListener`] fed by the shared one. Accepted
//! streams report the dropped listener's address as their local address, which is what the
//! connection's passive host candidate names; the session rewrites that candidate's port to the
//! shared one before signalling it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use webrtc::runtime::{AsyncTcpListener, AsyncTcpStream};

/// How long a new connection may take to send its first STUN request.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest first frame accepted.
const MAX_FIRST_FRAME: usize = 1500;
/// Accepted connections waiting for one peer connection.
const ACCEPT_QUEUE: usize = 16;

type Accepted = (Arc<dyn AsyncTcpStream>, SocketAddr);
/// A routed connection: the stream, its peer and the bytes already read from it.
type Handoff = (tokio::net::TcpStream, SocketAddr, Vec<u8>);

/// The shared ICE-TCP listener.
pub struct TcpMux {
    local_addr: SocketAddr,
    routed: AtomicUsize,
    routes: Mutex<HashMap<String, mpsc::Sender<Handoff>>>,
}

impl TcpMux {
    /// Binds the shared listener and starts accepting.
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<TcpMux>> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mux = Arc::new(TcpMux {
            local_addr: listener.local_addr()?,
            routed: AtomicUsize::new(0),
            routes: Mutex::new(HashMap::new()),
        });
        tokio::spawn(accept_loop(listener, Arc::downgrade(&mux)));
        Ok(mux)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections handed to a peer connection so far.
    pub fn routed_connections(&self) -> usize {
        self.routed.load(Ordering::Relaxed)
    }

    /// A listener for the connection with local ufrag `ufrag`, posing as `local_addr`.
    pub fn register(self: &Arc<Self>, ufrag: &str, local_addr: SocketAddr) -> Arc<MuxListener> {
        let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
        self.routes
            .lock()
            .expect("routes lock is never poisoned")
            .insert(ufrag.to_owned(), sender);
        Arc::new(MuxListener {
            mux: Arc::clone(self),
            ufrag: ufrag.to_owned(),
            local_addr,
            accepted: tokio::sync::Mutex::new(receiver),
        })
    }

    fn route(&self, ufrag: &str) -> Option<mpsc::Sender<Handoff>> {
        self.routes
            .lock()
            .expect("routes lock is never poisoned")
            .get(ufrag)
            .cloned()
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, mux: Weak<TcpMux>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(mux) = mux.upgrade() else { return };
        tokio::spawn(async move {
            if let Ok(Some((stream, prefix, ufrag))) =
                tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_first_frame(stream)).await
            {
                if let Some(route) = mux.route(&ufrag) {
                    if route.try_send((stream, peer, prefix)).is_ok() {
                        mux.routed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
}

/// Reads one RFC 4571 frame and extracts the local ufrag from its STUN USERNAME.
async fn read_first_frame(
    mut stream: tokio::net::TcpStream,
) -> Option<(tokio::net::TcpStream, Vec<u8>, String)> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.ok()?;
    let length = usize::from(u16::from_be_bytes(length));
    if length > MAX_FIRST_FRAME {
        return None;
    }
    let mut packet = vec![0u8; length];
    stream.read_exact(&mut packet).await.ok()?;
    let ufrag = crate::ice_mux::local_ufrag(&packet)?.to_owned();
    let mut prefix = Vec::with_capacity(length + 2);
    prefix.extend_from_slice(&(length as u16).to_be_bytes());
    prefix.extend_from_slice(&packet);
    Some((stream, prefix, ufrag))
}

/// One connection's view of the shared listener.
pub struct MuxListener {
    mux: Arc<TcpMux>,
    ufrag: String,
    local_addr: SocketAddr,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Handoff>>,
}

impl fmt::Debug for MuxListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MuxListener {
    fn drop(&mut self) {
        self.mux
            .routes
            .lock()
            .expect("routes lock is never poisoned")
            .remove(&self.ufrag);
    }
}

impl AsyncTcpListener for MuxListener {
    fn accept<'a>(&'a self) -> Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + 'a>> {
        Box::pin(async move {
            let mut accepted = self.accepted.lock().await;
            let (stream, peer, prefix) = accepted
                .recv()
                .await
                .ok_or_else(|| io::Error::other("ice tcp mux closed"))?;
            let stream: Arc<dyn AsyncTcpStream> = Arc::new(MuxStream {
                stream,
                prefix: Mutex::new(prefix),
                local_addr: self.local_addr,
                peer_addr: peer,
            });
            Ok((stream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// An accepted ICE-TCP connection; the bytes read while routing it are replayed first.
pub struct MuxStream {
    stream: tokio::net::TcpStream,
    prefix: Mutex<Vec<u8>>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxStream")
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl AsyncTcpStream for MuxStream {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            {
                let mut prefix = self.prefix.lock().expect("prefix lock is never poisoned");
                if !prefix.is_empty() {
                    let n = prefix.len().min(buf.len());
                    buf[..n].copy_from_slice(&prefix[..n]);
                    prefix.drain(..n);
                    return Ok(n);
                }
            }
            loop {
                self.stream.readable().await?;
                match self.stream.try_read(buf) {
                    Ok(n) => return Ok(n),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return Err(err),
                }
            }
        })
    }

    fn write_all<'a, 'b>(
        &'a self,
        buf: &'b [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            let mut remaining = buf;
            while !remaining.is_empty() {
                self.stream.writable().await?;
                match self.stream.try_write(remaining) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => remaining = &remaining[n..],
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer_addr)
    }
}
