//! Talks to a running host's admin API.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gust_host::{keys, state_file};

use crate::cli::Target;

/// An admin API client for one host.
pub struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
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
    /// `.gust/host.json`; the key: `--key`/`GUST_KEY`, else `.gust/keys.json`.
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Ok(Self { base, key, agent })
    }

    /// A client of the host (or cluster node) at `base` using `key`.
    pub fn new(base: &str, key: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
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
