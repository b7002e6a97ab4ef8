//! The embedded MQTT broker: rumqttd in-process, MQTT 3.1.1 and 5 on one
//! port.
//!
//! rumqttd serves each protocol version on its own listener. Gust listens on
//! the public address itself, reads the first bytes of each connection (the
//! CONNECT packet's protocol level) and splices the connection to rumqttd's
//! 3.1.1 or 5 listener, both bound on loopback ports of their own. Binding
//! the public address first is also what makes a taken port an immediate,
//! clear error ([`BrokerError::AddressInUse`]).
//!
//! # Threads and shutdown
//!
//! rumqttd's router runs on a std thread of its own; the listeners and every
//! connection run on a tokio runtime owned by a dedicated std thread
//! (`gust-mqtt-broker`), so the broker never competes with the host's
//! runtime. [`EmbeddedBroker::shutdown`] (or dropping the broker) stops that
//! runtime: the port is released and every device and subscriber connection
//! is closed at once (clients reconnect when a broker is back). rumqttd 0.20
//! has no way to stop its router, so that one thread stays parked on an
//! empty channel, with the sessions and messages it held in memory, until
//! the process exits; a host stopping for good loses them (see the module
//! docs of [`crate::mqtt`] for what that means for QoS 1).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttd::protocol::{v4::V4, v5::V5};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{BrokerError, BrokerUrl};

/// Where the embedded broker listens unless configured otherwise (1883 is
/// left to a system broker such as Mosquitto).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1884);

/// How long a new connection may take to send its CONNECT packet header.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    /// Address devices connect to (MQTT 3.1.1 and 5); port 0 picks a free
    /// port (see [`EmbeddedBroker::local_addr`]).
    pub listen: SocketAddr,
    /// Most connections at once.
    pub max_connections: usize,
    /// Largest accepted PUBLISH payload, in bytes.
    pub max_payload_size: usize,
    /// Unacknowledged QoS 1 publishes a client may have in flight towards the
    /// broker.
    pub max_inflight_count: usize,
    /// Size of one in-memory log segment of a subscription filter, in bytes.
    pub max_segment_size: usize,
    /// Segments kept per subscription filter: a subscriber that falls more
    /// than `max_segment_size * max_segment_count` bytes behind (or is away
    /// that long) loses the oldest messages.
    pub max_segment_count: usize,
    /// Username -> password pairs devices must present; empty: anonymous
    /// connections are accepted. Gust's own subscribers get a generated
    /// account ([`EmbeddedBroker::client_url`]).
    pub users: HashMap<String, String>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            max_connections: 10_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 100,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 16,
            users: HashMap::new(),
        }
    }
}

/// A running in-process MQTT broker (rumqttd). Stops on
/// [`shutdown`](Self::shutdown) or drop.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    client_url: BrokerUrl,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts the broker. Returns once the listen address is bound; fails
    /// with [`BrokerError::AddressInUse`] if it is taken.
    pub fn start(config: EmbeddedBrokerConfig) -> Result<Self, BrokerError> {
        let listener = StdListener::bind(config.listen).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                BrokerError::AddressInUse {
                    addr: config.listen,
                }
            } else {
                BrokerError::Listen {
                    addr: config.listen,
                    source: e,
                }
            }
        })?;
        let listen_err = |source| BrokerError::Listen {
            addr: config.listen,
            source,
        };
        let addr = listener.local_addr().map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;

        let mut users = config.users.clone();
        let client_url = if users.is_empty() {
            BrokerUrl::plain(connect_host(addr), addr.port())
        } else {
            let password = gust_events::new_id();
            users.insert(INTERNAL_USER.into(), password.clone());
            let mut url = BrokerUrl::plain(connect_host(addr), addr.port());
            url.credentials = Some((INTERNAL_USER.into(), password));
            url
        };

        // rumqttd's own listeners, on loopback ports nobody else knows.
        let v4_addr = free_loopback_port().map_err(|e| BrokerError::Start(e.to_string()))?;
        let v5_addr = free_loopback_port().map_err(|e| BrokerError::Start(e.to_string()))?;
        let connections = ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT.as_millis() as u16,
            max_payload_size: config.max_payload_size,
            max_inflight_count: config.max_inflight_count,
            auth: (!users.is_empty()).then_some(users),
            external_auth: None,
            dynamic_filters: true,
        };
        let server = |name: &str, listen| ServerSettings {
            name: name.into(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let v4 = server("gust-mqtt-v4", v4_addr);
        let v5 = server("gust-mqtt-v5", v5_addr);
        let router = Router::new(
            0,
            RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: config.max_segment_size,
                max_segment_count: config.max_segment_count,
                ..RouterConfig::default()
            },
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Start(format!("tokio runtime: {e}")))?;
        let (stop, stopped) = oneshot::channel();
        let router_tx = router.spawn();
        let thread = std::thread::Builder::new()
            .name("gust-mqtt-broker".into())
            .spawn(move || {
                let mut v4 = Server::new(v4, router_tx.clone(), V4);
                let mut v5 = Server::new(v5, router_tx, V5);
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "embedded MQTT broker cannot listen");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        r = v4.start(LinkType::Remote) => {
                            tracing::error!(result = ?r, "embedded MQTT 3.1.1 listener stopped");
                        }
                        r = v5.start(LinkType::Remote) => {
                            tracing::error!(result = ?r, "embedded MQTT 5 listener stopped");
                        }
                        () = accept(listener, v4_addr, v5_addr) => {}
                    }
                });
                // Dropping the runtime here closes every connection.
            })
            .map_err(|e| BrokerError::Start(format!("broker thread: {e}")))?;
        tracing::info!(%addr, "embedded MQTT broker listening (MQTT 3.1.1 and 5)");
        Ok(Self {
            addr,
            client_url,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the broker listens on (with the real port when port 0
    /// was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where Gust's own subscribers connect (`mqtt://host:port`, with the
    /// generated account when devices must authenticate): what the mqtt
    /// trigger's subscribers are given.
    pub fn client_url(&self) -> BrokerUrl {
        self.client_url.clone()
    }

    /// Stops listening and closes every connection; waits for the broker's
    /// runtime thread to finish. Idempotent; also done on drop.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The account Gust's subscribers use when the broker requires one.
const INTERNAL_USER: &str = "gust-internal";

/// The host to connect to for a listen address (loopback for "any").
fn connect_host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && addr.is_ipv4() => Ipv4Addr::LOCALHOST.to_string(),
        ip if ip.is_unspecified() => "::1".into(),
        ip => ip.to_string(),
    }
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let l = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    l.local_addr()
}

/// Accepts device connections and splices each to rumqttd's listener for
/// its protocol version.
async fn accept(listener: TcpListener, v4: SocketAddr, v5: SocketAddr) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = splice(stream, v4, v5).await {
                tracing::debug!(%peer, error = %e, "MQTT connection ended");
            }
        });
    }
}

async fn splice(mut device: TcpStream, v4: SocketAddr, v5: SocketAddr) -> std::io::Result<()> {
    let _ = device.set_nodelay(true);
    let mut head = Vec::with_capacity(32);
    let level = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            if let Some(level) = protocol_level(&head)? {
                return Ok::<u8, std::io::Error>(level);
            }
            let mut buf = [0u8; 32];
            let n = device.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let upstream_addr = if level == 5 { v5 } else { v4 };
    // rumqttd's listener may still be starting right after `start`.
    let mut tries = 0;
    let mut upstream = loop {
        match TcpStream::connect(upstream_addr).await {
            Ok(s) => break s,
            Err(e) if tries < 40 => {
                tries += 1;
                tracing::trace!(error = %e, "waiting for rumqttd's listener");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let _ = upstream.set_nodelay(true);
    tokio::io::AsyncWriteExt::write_all(&mut upstream, &head).await?;
    tokio::io::copy_bidirectional(&mut device, &mut upstream).await?;
    Ok(())
}

/// The protocol level of the CONNECT packet starting `head`: `None` if more
/// bytes are needed, an error if it is not a CONNECT packet.
fn protocol_level(head: &[u8]) -> std::io::Result<Option<u8>> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let Some(&first) = head.first() else {
        return Ok(None);
    };
    if first != 0x10 {
        return Err(invalid("the first packet is not CONNECT"));
    }
    // Remaining length: 1 to 4 bytes, high bit = more.
    let mut i = 1;
    loop {
        let Some(&b) = head.get(i) else {
            return Ok(None);
        };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(invalid("malformed remaining length"));
        }
    }
    let (Some(&hi), Some(&lo)) = (head.get(i), head.get(i + 1)) else {
        return Ok(None);
    };
    let name_len = (usize::from(hi) << 8) | usize::from(lo);
    if name_len > 6 {
        return Err(invalid("unknown protocol name"));
    }
    Ok(head.get(i + 2 + name_len).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_protocol_level_of_connect() {
        // MQTT 3.1.1: 10 <len> 00 04 'MQTT' 04 ...
        let v4 = [0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 4, 2];
        assert_eq!(protocol_level(&v4).unwrap(), Some(4));
        let v5 = [0x10, 0x80, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 5];
        assert_eq!(protocol_level(&v5).unwrap(), Some(5));
        let v31 = [0x10, 0x10, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3];
        assert_eq!(protocol_level(&v31).unwrap(), Some(3));
        assert_eq!(protocol_level(&v5[..7]).unwrap(), None);
        assert_eq!(protocol_level(&[]).unwrap(), None);
        assert!(protocol_level(b"GET / HTTP/1.1").is_err());
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let err = EmbeddedBroker::start(EmbeddedBrokerConfig {
            listen: taken.local_addr().unwrap(),
            ..EmbeddedBrokerConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, BrokerError::AddressInUse { .. }), "{err}");
        assert!(err.to_string().contains("already in use"), "{err}");
    }
}
