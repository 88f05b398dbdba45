//! ICE-TCP over one shared port: the SFU accepts every ICE-TCP connection (RFC 6544, framed as
//! RFC 4571) on a single listener, reads the first framed STUN binding request, and hands the
//! connection to the peer connection whose local ufrag the request names.
//!
//! Like the UDP mux this plugs in through the per-connection runtime: `wrap_tcp_listener` drops
//! the connection's own listener and returns a [`MuxListener`] fed by the shared one. Accepted
//! streams report the dropped listener's address as their local address, which is what the
//! connection's passive host candidate names; the session rewrites that candidate's port to the
//! shared one before signalling it.
//!
//! webrtc binds one listener per local address it gathers on, so on a host with several
//! interfaces one connection registers several listeners under the same ufrag. Each keeps its
//! own route (keyed by ufrag and posed address); a connection is handed to the route whose
//! address matches the interface it arrived on. **Invariant:** `accept` never fails fast: webrtc
//! re-arms `accept` as soon as it returns, so an error answered at once would spin a core and
//! flood the log (issue 12). A listener whose route is gone waits forever instead; webrtc drops
//! the pending future when it closes the connection.

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

use crate::backoff::Backoff;
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
    routes: Mutex<HashMap<String, Vec<Route>>>,
}

/// One registered listener: the address it poses as and its queue.
struct Route {
    local_addr: SocketAddr,
    sender: mpsc::Sender<Handoff>,
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
        let mut routes = self.routes.lock().expect("routes lock is never poisoned");
        let listeners = routes.entry(ufrag.to_owned()).or_default();
        // A rebind (ICE restart) registers the same address again: the new listener replaces it.
        listeners.retain(|route| route.local_addr != local_addr);
        listeners.push(Route { local_addr, sender });
        drop(routes);
        Arc::new(MuxListener {
            mux: Arc::clone(self),
            ufrag: ufrag.to_owned(),
            local_addr,
            accepted: tokio::sync::Mutex::new(receiver),
        })
    }

    /// The queue for a connection naming `ufrag` that arrived on local address `arrived_on`:
    /// the listener posing as that interface's address, else the connection's first listener.
    fn route(&self, ufrag: &str, arrived_on: Option<SocketAddr>) -> Option<mpsc::Sender<Handoff>> {
        let routes = self.routes.lock().expect("routes lock is never poisoned");
        let listeners = routes.get(ufrag)?;
        let chosen = arrived_on
            .and_then(|addr| {
                listeners
                    .iter()
                    .find(|route| route.local_addr.ip() == addr.ip())
            })
            .or_else(|| listeners.first())?;
        Some(chosen.sender.clone())
    }

    /// Removes the listener of `ufrag` posing as `local_addr`.
    fn unregister(&self, ufrag: &str, local_addr: SocketAddr) {
        let mut routes = self.routes.lock().expect("routes lock is never poisoned");
        if let Some(listeners) = routes.get_mut(ufrag) {
            listeners.retain(|route| route.local_addr != local_addr);
            if listeners.is_empty() {
                routes.remove(ufrag);
            }
        }
    }

    /// Listeners currently registered (for tests).
    pub fn registered_listeners(&self) -> usize {
        self.routes
            .lock()
            .expect("routes lock is never poisoned")
            .values()
            .map(Vec::len)
            .sum()
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, mux: Weak<TcpMux>) {
    let mut backoff = Backoff::new();
    loop {
        let accepted = listener.accept().await;
        let Some((stream, peer)) = backoff.accepted(accepted, "ice tcp accept").await else {
            continue;
        };
        let Some(mux) = mux.upgrade() else { return };
        tokio::spawn(async move {
            let arrived_on = stream.local_addr().ok();
            if let Ok(Some((stream, prefix, ufrag))) =
                tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_first_frame(stream)).await
            {
                if let Some(route) = mux.route(&ufrag, arrived_on) {
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
    let ufrag = crate::stun::local_ufrag(&packet)?.to_owned();
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
        self.mux.unregister(&self.ufrag, self.local_addr);
    }
}

impl AsyncTcpListener for MuxListener {
    fn accept<'a>(&'a self) -> Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + 'a>> {
        Box::pin(async move {
            let mut accepted = self.accepted.lock().await;
            let Some((stream, peer, prefix)) = accepted.recv().await else {
                // The route is gone (the mux itself went away): nothing will ever arrive, and an
                // error would be re-armed at once by webrtc. Wait until the future is dropped.
                return std::future::pending().await;
            };
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

/// Errors after which a TCP stream never delivers data again.
fn is_final(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::BrokenPipe
    )
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
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    // webrtc re-arms a read at once after these ("retryable" for UDP), but on a
                    // TCP stream they are final: report the end of the stream so it is dropped.
                    Err(err) if is_final(&err) => return Ok(0),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test addresses are valid")
    }

    /// An RFC 4571 frame holding a binding request whose USERNAME names `ufrag`.
    fn framed_binding_request(ufrag: &str) -> Vec<u8> {
        let packet = crate::stun::test_packets::binding_request(Some(&format!("{ufrag}:remote")));
        let mut frame = (packet.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&packet);
        frame
    }

    async fn dial(mux: &TcpMux, ufrag: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(mux.local_addr())
            .await
            .expect("the mux listens");
        stream
            .write_all(&framed_binding_request(ufrag))
            .await
            .expect("the frame is sent");
        stream
    }

    #[tokio::test]
    async fn listeners_of_one_connection_on_several_addresses_all_stay_routed() {
        let mux = TcpMux::bind(addr("127.0.0.1:0")).await.expect("binds");
        // webrtc on a host with two interfaces: one listener per local address, same ufrag.
        let loopback = mux.register("frag", addr("127.0.0.1:40001"));
        let bridge = mux.register("frag", addr("172.17.0.1:40002"));
        assert_eq!(mux.registered_listeners(), 2);

        let _client = dial(&mux, "frag").await;
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), loopback.accept())
            .await
            .expect("the connection reaches the listener of the interface it arrived on")
            .expect("accept succeeds");
        assert_eq!(stream.local_addr().expect("known"), addr("127.0.0.1:40001"));

        // Dropping one listener leaves the other routed (it used to remove both).
        drop(loopback);
        assert_eq!(mux.registered_listeners(), 1);
        let _client = dial(&mux, "frag").await;
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), bridge.accept())
            .await
            .expect("the remaining listener still gets connections")
            .expect("accept succeeds");
        assert_eq!(
            stream.local_addr().expect("known"),
            addr("172.17.0.1:40002")
        );
        drop(bridge);
        assert_eq!(mux.registered_listeners(), 0);
    }

    #[tokio::test]
    async fn accept_on_a_closed_route_waits_instead_of_failing_at_once() {
        let mux = TcpMux::bind(addr("127.0.0.1:0")).await.expect("binds");
        let old = mux.register("frag", addr("127.0.0.1:40001"));
        // A rebind registers the same address again and replaces the old route.
        let _new = mux.register("frag", addr("127.0.0.1:40001"));
        let outcome = tokio::time::timeout(Duration::from_millis(300), old.accept()).await;
        assert!(
            outcome.is_err(),
            "accept on a closed route must not return (webrtc re-arms it at once)"
        );
    }
}
