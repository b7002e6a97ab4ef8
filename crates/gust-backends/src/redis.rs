//! The `redis` backend: key-value stores, leases and dedupe on Redis (or
//! Valkey), through one multiplexed, reconnecting connection
//! ([`ConnectionManager`]) per value.
//!
//! How names map (`<ns>` and `<bucket>` have `%`, `:`, `{` and `}` written
//! as `%25`, `%3A`, `%7B`, `%7D`, so every name is unambiguous):
//!
//! - kv store `<bucket>` of namespace `<ns>`: each value under
//!   `gust:{<ns>:<bucket>}:<key>`, and a sorted set `gust:{<ns>:<bucket>}`
//!   of the keys (all with score 0, so ordered byte-wise) that
//!   `list_keys` pages through by rank. The braces are a Redis Cluster hash
//!   tag: a store's keys share one slot, so its scripts are cluster-safe.
//! - lease `<name>`: `gust:lease:{<ns>}:<name>` holding the holder, with
//!   the lease's ttl as the key's expiry (on the server's clock).
//! - dedupe key: `gust:dedupe:{<ns>}:<digest>` (see
//!   [`key_digest_hex`](crate::dedupe::key_digest_hex)), expiring after
//!   the window.
//!
//! Every write that touches a value and the key index is one Lua script, so
//! it is atomic; `increment` is `INCRBY` inside such a script.
//!
//! Differences from the embedded backend: counters are Redis integers, so
//! `increment` past `i64::MAX` (not `u64::MAX`) is an `InvalidValue`
//! error. Durability is the server's (`appendonly`/`appendfsync`): with the
//! default configuration a killed server loses recent writes.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script};
use async_trait::async_trait;

use crate::dedupe::{Dedupe, key_digest_hex};
use crate::{BackendError, KeyPage, KeyValue, KeyValueProvider, Lease, Result};

/// Writes `value` and indexes its key.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]) \
         redis.call('ZADD', KEYS[2], 0, ARGV[2]) \
         return 1",
    )
});

/// Deletes a value and its key from the index.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('DEL', KEYS[1]) \
         redis.call('ZREM', KEYS[2], ARGV[1]) \
         return 1",
    )
});

/// KEYS: index, then one value key per pair; ARGV: key, value, key, value..
static SET_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for i = 2, #KEYS do \
           redis.call('SET', KEYS[i], ARGV[2 * i - 2]) \
           redis.call('ZADD', KEYS[1], 0, ARGV[2 * i - 3]) \
         end \
         return 1",
    )
});

/// KEYS: index, then one value key per key; ARGV: the keys.
static DELETE_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for i = 2, #KEYS do \
           redis.call('DEL', KEYS[i]) \
           redis.call('ZREM', KEYS[1], ARGV[i - 1]) \
         end \
         return 1",
    )
});

/// Adds ARGV[1] to the decimal number under KEYS[1] (normalising
/// whitespace and leading zeros first, which `INCRBY` refuses but the
/// embedded backend accepts) and indexes ARGV[2].
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) \
         if v then \
           local digits = string.match(v, '^%s*(%d+)%s*$') \
           if not digits then return redis.error_reply('GUST_NOT_A_NUMBER') end \
           digits = string.gsub(digits, '^0+(%d)', '%1') \
           if digits ~= v then redis.call('SET', KEYS[1], digits) end \
         end \
         local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
         redis.call('ZADD', KEYS[2], 0, ARGV[2]) \
         return n",
    )
});

/// Sets KEYS[1] to ARGV[3] if it holds ARGV[2] (ARGV[1] = '1') or nothing
/// (ARGV[1] = '0'), indexing ARGV[4]; 1 when it did.
static COMPARE_AND_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) \
         if ARGV[1] == '1' then \
           if v ~= ARGV[2] then return 0 end \
         elseif v then return 0 end \
         redis.call('SET', KEYS[1], ARGV[3]) \
         redis.call('ZADD', KEYS[2], 0, ARGV[4]) \
         return 1",
    )
});

/// Claims KEYS[1] for ARGV[1] for ARGV[2] ms if free or already ARGV[1]'s.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1]) \
         if v and v ~= ARGV[1] then return 0 end \
         redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
         return 1",
    )
});

/// Deletes KEYS[1] if ARGV[1] holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end \
         return 1",
    )
});

/// Opens a reconnecting connection to `url` (`redis://host:port[/db]`).
pub async fn connect(url: &str) -> Result<ConnectionManager> {
    let client = ::redis::Client::open(url)
        .map_err(|e| BackendError::engine("redis", format!("bad url {url}: {e}")))?;
    client.get_connection_manager().await.map_err(|e| {
        BackendError::engine(
            "redis",
            format!("cannot connect to {}: {e}", crate::services::redact(url)),
        )
    })
}

/// `name` with `%`, `:`, `{`, `}` percent-escaped.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// `text` with Redis glob characters backslash-escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes every kv store, lease and dedupe key of `namespace` (with `SCAN`,
/// so it does not block the server); returns how many keys it deleted.
pub async fn delete_namespace(conn: &ConnectionManager, namespace: &str) -> Result<u64> {
    let ns = glob_escape(&escape(namespace));
    let mut conn = conn.clone();
    let mut deleted = 0;
    for pattern in [
        format!("gust:{{{ns}:*"),
        format!("gust:lease:{{{ns}}}:*"),
        format!("gust:dedupe:{{{ns}}}:*"),
    ] {
        let keys: Vec<Vec<u8>> = {
            let mut iter = conn
                .scan_match::<_, Vec<u8>>(&pattern)
                .await
                .map_err(|e| BackendError::engine("redis", format!("SCAN {pattern}: {e}")))?;
            let mut keys = Vec::new();
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(|e| BackendError::engine("redis", e))?);
            }
            keys
        };
        for chunk in keys.chunks(500) {
            let n: u64 = conn
                .del(chunk)
                .await
                .map_err(|e| BackendError::engine("redis", format!("DEL: {e}")))?;
            deleted += n;
        }
    }
    Ok(deleted)
}

// ---------------------------------------------------------------------------
// Key-value

const KV: &str = "redis kv";

fn kv_error(what: &str, e: ::redis::RedisError) -> BackendError {
    BackendError::engine(KV, format!("{what}: {e}"))
}

/// Key-value stores of one namespace on Redis: a [`KeyValueProvider`].
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    namespace: String,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Connects to `url` (`redis://127.0.0.1:6379`); stores are kept apart
    /// per `namespace` (see the module docs for the key names).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self::with_connection(connect(url).await?, namespace))
    }

    /// Like [`RedisKv::connect`], on an existing connection.
    pub fn with_connection(conn: ConnectionManager, namespace: &str) -> Self {
        Self {
            conn,
            namespace: namespace.to_string(),
        }
    }
}

impl KeyValueProvider for RedisKv {
    fn open(&self, name: &str) -> Result<Arc<dyn KeyValue>> {
        let index = format!("gust:{{{}:{}}}", escape(&self.namespace), escape(name));
        Ok(Arc::new(RedisStore {
            conn: self.conn.clone(),
            prefix: format!("{index}:").into_bytes(),
            index,
        }))
    }
}

/// One store of a [`RedisKv`].
struct RedisStore {
    conn: ConnectionManager,
    /// The sorted set of keys.
    index: String,
    /// What every value key starts with.
    prefix: Vec<u8>,
}

impl RedisStore {
    fn key(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key.as_bytes());
        out
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

#[async_trait]
impl KeyValue for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn()
            .get(self.key(key))
            .await
            .map_err(|e| kv_error("GET", e))
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        SET.key(self.key(key))
            .key(&self.index)
            .arg(value)
            .arg(key)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(|e| kv_error("SET + ZADD script", e))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        DELETE
            .key(self.key(key))
            .key(&self.index)
            .arg(key)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(|e| kv_error("DEL + ZREM script", e))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.conn()
            .exists(self.key(key))
            .await
            .map_err(|e| kv_error("EXISTS", e))
    }

    async fn list_keys(&self, cursor: Option<u64>, page_size: usize) -> Result<KeyPage> {
        let skip = cursor.unwrap_or(0);
        if page_size == 0 {
            return Ok(KeyPage::default());
        }
        // One more than asked, to know whether another page follows.
        let start = isize::try_from(skip).unwrap_or(isize::MAX);
        let stop = start.saturating_add(isize::try_from(page_size).unwrap_or(isize::MAX));
        let mut keys: Vec<String> = self
            .conn()
            .zrange(&self.index, start, stop)
            .await
            .map_err(|e| kv_error("ZRANGE", e))?;
        let more = keys.len() > page_size;
        keys.truncate(page_size);
        let cursor = more.then(|| skip + keys.len() as u64);
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        let invalid = |reason: &str| BackendError::InvalidValue {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let delta = i64::try_from(delta).map_err(|_| invalid("delta exceeds i64::MAX on Redis"))?;
        let result: std::result::Result<i64, _> = INCREMENT
            .key(self.key(key))
            .key(&self.index)
            .arg(delta)
            .arg(key)
            .invoke_async(&mut self.conn())
            .await;
        match result {
            Ok(n) => u64::try_from(n).map_err(|_| invalid("counter is negative")),
            Err(e) if e.to_string().contains("GUST_NOT_A_NUMBER") => {
                Err(invalid("not a decimal number, so it cannot be incremented"))
            }
            Err(e)
                if e.to_string().contains("overflow")
                    || e.to_string().contains("not an integer") =>
            {
                Err(invalid("counter would overflow i64 (Redis integers)"))
            }
            Err(e) => Err(kv_error("INCRBY script", e)),
        }
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        let values: Vec<Option<Vec<u8>>> = ::redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| kv_error("MGET", e))?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut call = SET_MANY.key(&self.index);
        for (k, v) in &pairs {
            call.key(self.key(k)).arg(k).arg(v);
        }
        call.invoke_async::<()>(&mut self.conn())
            .await
            .map_err(|e| kv_error("SET + ZADD script (many)", e))
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut call = DELETE_MANY.key(&self.index);
        for k in &keys {
            call.key(self.key(k)).arg(k);
        }
        call.invoke_async::<()>(&mut self.conn())
            .await
            .map_err(|e| kv_error("DEL + ZREM script (many)", e))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool> {
        let swapped: i64 = COMPARE_AND_SWAP
            .key(self.key(key))
            .key(&self.index)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(key)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| kv_error("compare-and-swap script", e))?;
        Ok(swapped == 1)
    }
}

// ---------------------------------------------------------------------------
// Leases

const LEASE: &str = "redis lease";

/// Leases of one namespace on Redis: a [`Lease`] atomic across every
/// process using the same server, expiring on the server's clock.
#[derive(Clone)]
pub struct RedisLeases {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLeases {
    /// Connects to `url`; leases are kept apart per `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self::with_connection(connect(url).await?, namespace))
    }

    /// Like [`RedisLeases::connect`], on an existing connection.
    pub fn with_connection(conn: ConnectionManager, namespace: &str) -> Self {
        Self {
            conn,
            prefix: format!("gust:lease:{{{}}}:", escape(namespace)),
        }
    }
}

#[async_trait]
impl Lease for RedisLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        // `PX 0` is refused; a zero ttl is a claim that ends at once.
        let ms = (ttl.as_millis() as u64).max(1);
        let claimed: i64 = ACQUIRE
            .key(format!("{}{name}", self.prefix))
            .arg(holder)
            .arg(ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| BackendError::engine(LEASE, format!("acquire script: {e}")))?;
        Ok(claimed == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        RELEASE
            .key(format!("{}{name}", self.prefix))
            .arg(holder)
            .invoke_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| BackendError::engine(LEASE, format!("release script: {e}")))
    }
}

// ---------------------------------------------------------------------------
// Dedupe

/// Dedupe of one namespace on Redis: `SET <key> 1 NX PX <window>`, shared
/// by every process using the same server.
#[derive(Clone)]
pub struct RedisDedupe {
    conn: ConnectionManager,
    prefix: String,
    window_ms: u64,
}

impl std::fmt::Debug for RedisDedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDedupe")
            .field("prefix", &self.prefix)
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

impl RedisDedupe {
    /// Connects to `url`; keys are remembered for `window` (at least 1 ms),
    /// kept apart per `namespace`.
    pub async fn connect(url: &str, namespace: &str, window: Duration) -> Result<Self> {
        Ok(Self::with_connection(
            connect(url).await?,
            namespace,
            window,
        ))
    }

    /// Like [`RedisDedupe::connect`], on an existing connection.
    pub fn with_connection(conn: ConnectionManager, namespace: &str, window: Duration) -> Self {
        Self {
            conn,
            prefix: format!("gust:dedupe:{{{}}}:", escape(namespace)),
            window_ms: (window.as_millis() as u64).max(1),
        }
    }
}

#[async_trait]
impl Dedupe for RedisDedupe {
    async fn first_seen(&self, key: &str) -> Result<bool> {
        let set: Option<String> = ::redis::cmd("SET")
            .arg(format!("{}{}", self.prefix, key_digest_hex(key)))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(self.window_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| BackendError::engine("redis dedupe", format!("SET NX PX: {e}")))?;
        Ok(set.is_some())
    }

    async fn forget(&self, key: &str) -> Result<()> {
        let _: i64 = ::redis::cmd("DEL")
            .arg(format!("{}{}", self.prefix, key_digest_hex(key)))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| BackendError::engine("redis dedupe", format!("DEL: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_so_they_cannot_collide() {
        assert_eq!(escape("a:b{c}%"), "a%3Ab%7Bc%7D%25");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
