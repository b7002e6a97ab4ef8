//! Talks to a running host's admin API, over HTTP or HTTPS (see [`tls`]).

mod tls;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gust_host::{keys, state_file};

use crate::cli::Target;

pub use tls::TlsFailure;

/// An admin API client for one host.
pub struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
    /// Extra CA certificates trusted for an `https://` host.
    ca_cert: Option<PathBuf>,
}

/// A response: status and body bytes.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or the error message the host sent.
    pub fn json(&self) -> Result<serde_json::Value> {
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .with_context(|| format!("the host answered {} with: {}", self.status, self.text()))?;
        if self.status >= 400 {
            bail!(
                "the host answered {}: {}",
                self.status,
                value["message"].as_str().unwrap_or(&self.text())
            );
        }
        Ok(value)
    }
}

impl Client {
    /// Finds the host: `--url`/`GUST_URL`, else the app folder's
    /// `.gust/host.json`; the key: `--key`/`GUST_KEY`, else `.gust/keys.json`;
    /// for HTTPS, also trusts `--ca-cert`/`GUST_CA_CERT`.
    pub fn from_target(target: &Target) -> Result<Self> {
        let state = target.app.join(".gust");
        let base = match &target.url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => state_file::read(&state)
                .map(|f| f.url)
                .with_context(|| no_host(&target.app))?,
        };
        let key = match &target.key {
            Some(k) => k.clone(),
            None => {
                let path = keys::keys_path(&state);
                let text = std::fs::read(&path).with_context(|| {
                    format!(
                        "no admin key: {} is missing; pass --key or GUST_KEY",
                        path.display()
                    )
                })?;
                let keys: keys::Keys = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a valid keys file", path.display()))?;
                keys.admin
            }
        };
        Self::new(&base, &key, target.ca_cert.as_deref())
    }

    /// A client of the host (or cluster node) at `base` using `key`; an
    /// `https://` host's certificate must be signed by a root of the
    /// system or by a CA certificate in PEM file `ca_cert`.
    pub fn new(base: &str, key: &str, ca_cert: Option<&Path>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls::config(&base, ca_cert)?)
            .build()
            .into();
        Ok(Self {
            base,
            key: key.to_string(),
            agent,
            ca_cert: ca_cert.map(Path::to_path_buf),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        if let Some(failure) = tls::explain(&self.base, &e, self.ca_cert.as_deref()) {
            return failure.into();
        }
        // A plain HTTP request to an HTTPS listener gets a TLS alert back
        // (or a closed connection).
        let garbled = match &e {
            ureq::Error::Protocol(_) => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::InvalidData
            ),
            _ => false,
        };
        if garbled && !tls::is_https(&self.base) {
            return anyhow::anyhow!(
                "the gust host at {} did not answer in HTTP ({e}); if it serves HTTPS (`--tls-cert`), use an https:// URL",
                self.base
            );
        }
        anyhow::anyhow!(
            "cannot reach the gust host at {} ({e}); is `gust up` running?",
            self.base
        )
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Reply> {
        let mut response = self
            .agent
            .get(self.url(path))
            .header("x-gust-key", &self.key)
            .call()
            .map_err(|e| self.unreachable(e))?;
        read_reply(&mut response)
    }

    /// `POST path` with `body`.
    pub fn post(&self, path: &str, body: Vec<u8>) -> Result<Reply> {
        self.post_with(path, body, &[])
    }

    /// `POST path` with `body` and extra headers.
    pub fn post_with(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Result<Reply> {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("x-gust-key", &self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(&body[..]).map_err(|e| self.unreachable(e))?;
        read_reply(&mut response)
    }

    /// `GET path`, handing each chunk of the body to `sink` as it arrives.
    pub fn stream(&self, path: &str, mut sink: impl FnMut(&[u8])) -> Result<()> {
        let mut response = self
            .agent
            .get(self.url(path))
            .header("x-gust-key", &self.key)
            .call()
            .map_err(|e| self.unreachable(e))?;
        if response.status().as_u16() >= 400 {
            let reply = read_reply(&mut response)?;
            reply.json()?;
        }
        let mut reader = response.body_mut().as_reader();
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf).context("the log stream broke off")?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n]);
        }
    }
}

fn read_reply(response: &mut ureq::http::Response<ureq::Body>) -> Result<Reply> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .context("cannot read the host's answer")?;
    Ok(Reply { status, body })
}

fn no_host(app: &Path) -> String {
    format!(
        "no running gust host found for {}: start one with `gust up {}`, or pass --url and --key",
        app.display(),
        app.display()
    )
}
