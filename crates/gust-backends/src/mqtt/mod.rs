//! MQTT brokers: where Gust's MQTT clients connect ([`BrokerUrl`]), and the
//! broker Gust embeds ([`EmbeddedBroker`], behind the `mqtt` feature),
//! which lives here with the other embedded engines. The `mqtt` trigger
//! (in `gust-triggers`) subscribes to either.

#[cfg(feature = "mqtt")]
mod broker;

use std::fmt;
use std::str::FromStr;

#[cfg(feature = "mqtt")]
pub use broker::{DEFAULT_LISTEN, EmbeddedBroker, EmbeddedBrokerConfig};

/// What went wrong with a broker URL or the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker's listen address is taken.
    #[error(
        "cannot start the embedded MQTT broker on {addr}: the address is already in use \
         (is another MQTT broker, e.g. Mosquitto, listening there?); choose another listen address"
    )]
    AddressInUse {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The broker could not listen for another reason.
    #[error("cannot start the embedded MQTT broker on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker's thread or runtime could not start.
    #[error("cannot start the embedded MQTT broker: {0}")]
    Start(String),
    /// A broker URL is malformed or unsupported.
    #[error("invalid MQTT broker URL `{url}`: {why}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong.
        why: String,
    },
}

/// Where an MQTT client connects: `mqtt://[user:password@]host[:port]`
/// (`tcp://` is accepted too; the port defaults to 1883).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
}

impl BrokerUrl {
    /// A broker at `host:port` without credentials.
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// Parses `mqtt://[user:password@]host[:port]`.
    pub fn parse(url: &str) -> Result<Self, BrokerError> {
        let bad = |why: &str| BrokerError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = if let Some(r) = url.strip_prefix("mqtt://") {
            r
        } else if let Some(r) = url.strip_prefix("tcp://") {
            r
        } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(bad(
                "TLS brokers (mqtts://) are not supported yet; use mqtt://",
            ));
        } else {
            return Err(bad("expected mqtt://host:port"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("a broker URL has no path"));
        }
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (
                    Some((
                        gust_events::percent_decode(user),
                        gust_events::percent_decode(pass),
                    )),
                    hp,
                )
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[` in an IPv6 address"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("unexpected text after the IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is a number from 1 to 65535"))?,
        };
        Ok(Self {
            host: host.to_string(),
            port,
            credentials,
        })
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Shows the URL without the password.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.credentials {
            Some((user, _)) => write!(f, "mqtt://{user}:***@{host}:{}", self.port),
            None => write!(f, "mqtt://{host}:{}", self.port),
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("mqtt://broker.local:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("broker.local", 1884));
        assert_eq!(BrokerUrl::parse("tcp://10.0.0.1").unwrap().port, 1883);
        let u = BrokerUrl::parse("mqtt://dev%40x:p%3Ass@h:1").unwrap();
        assert_eq!(
            u.credentials,
            Some(("dev@x".to_string(), "p:ss".to_string()))
        );
        assert_eq!(u.to_string(), "mqtt://dev@x:***@h:1");
        let u = BrokerUrl::parse("mqtt://[::1]:1885/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1885));
        for bad in [
            "http://h:1",
            "mqtts://h:8883",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://h/a",
        ] {
            let e = BrokerUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
