//! Removing an app from a NATS server: every JetStream stream, key-value
//! bucket and object store that Gust made for one namespace (the name given
//! to `Services::open`), and nothing of any other namespace.
//!
//! The names, for namespace `ns` with prefix `P` (`gust_<ns>` with `-` as
//! `_`, upper-cased) and `e(x)` the escaped name `x`:
//! queues `P_Q_e`, topics `P_T_e`, stream partitions `P_S_e_P<n>` and
//! checkpoints `P_S_e_CP`, object stores `OBJ_P_B_e`, kv buckets
//! `KV_gust_kv_e(ns)__e`, `KV_gust_lease_e(ns)` and `KV_gust_dedupe_e(ns)`.

use async_nats::jetstream;
use futures::TryStreamExt;

use super::{engine, escape, escape_prefix, unescape};
use crate::Result;

/// Whether JetStream stream `stream` holds data of namespace `namespace`.
/// A name Gust escaped never has `_` followed by anything but two hex
/// digits, so a namespace that extends another (`shop` and `shop-q-x`)
/// never claims the other's streams.
pub fn belongs_to(stream: &str, namespace: &str) -> bool {
    let prefix = escape_prefix(&crate::services::nats_prefix(namespace)).to_uppercase();
    let ns = escape(namespace);
    let escaped = |name: &str| !name.is_empty() && unescape(name).is_some();
    if let Some(rest) = stream.strip_prefix(&prefix) {
        if let Some(name) = rest
            .strip_prefix("_Q_")
            .or_else(|| rest.strip_prefix("_T_"))
        {
            return escaped(name);
        }
        let Some(rest) = rest.strip_prefix("_S_") else {
            return false;
        };
        let name = rest.strip_suffix("_CP").or_else(|| {
            let (name, partition) = rest.rsplit_once("_P")?;
            let digits = !partition.is_empty() && partition.bytes().all(|b| b.is_ascii_digit());
            digits.then_some(name)
        });
        return name.is_some_and(escaped);
    }
    if let Some(name) = stream
        .strip_prefix("OBJ_")
        .and_then(|r| r.strip_prefix(&prefix))
        .and_then(|r| r.strip_prefix("_B_"))
    {
        return escaped(name);
    }
    if let Some(name) = stream.strip_prefix(&format!("KV_gust_kv_{ns}__")) {
        return escaped(name);
    }
    stream == format!("KV_gust_lease_{ns}") || stream == format!("KV_gust_dedupe_{ns}")
}

/// Deletes every stream, kv bucket and object store of `namespace` on the
/// server at `url` (see [`belongs_to`]); returns the names of the JetStream
/// streams deleted.
pub async fn delete_app(url: &str, namespace: &str) -> Result<Vec<String>> {
    let client = async_nats::connect(url).await.map_err(|e| {
        engine(format!(
            "cannot connect to {}: {e}",
            crate::services::redact(url)
        ))
    })?;
    let js = jetstream::new(client);
    let names: Vec<String> = js.stream_names().try_collect().await.map_err(engine)?;
    let mut deleted = Vec::new();
    for name in names.into_iter().filter(|n| belongs_to(n, namespace)) {
        js.delete_stream(&name)
            .await
            .map_err(|e| engine(format!("cannot delete stream {name}: {e}")))?;
        deleted.push(name);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyValueProvider, QueueProvider};

    #[test]
    fn names_of_the_namespace_and_only_those() {
        for name in [
            "GUST_SHOP_Q_jobs",
            "GUST_SHOP_Q_jobs-deadletter",
            "GUST_SHOP_T_orders",
            "GUST_SHOP_S_telemetry_P0",
            "GUST_SHOP_S_telemetry_P12",
            "GUST_SHOP_S_telemetry_CP",
            "GUST_SHOP_Q_a_3ab",
            "OBJ_GUST_SHOP_B_uploads",
            "KV_gust_kv_shop__seen",
            "KV_gust_kv_shop__gust_3atimers",
            "KV_gust_lease_shop",
            "KV_gust_dedupe_shop",
        ] {
            assert!(belongs_to(name, "shop"), "{name}");
        }
        for name in [
            "GUST_SHOP_Q_X_Q_jobs",
            "GUST_SHOP_Q_X_T_orders",
            "GUST_SHOP_S_X_S_telemetry_P0",
            "GUST_SHOPPING_Q_jobs",
            "GUST_SHOP_Q_",
            "GUST_SHOP_S_telemetry",
            "OBJ_GUST_SHOP_Q_X_B_uploads",
            "KV_gust_kv_shop-q-x__seen",
            "KV_gust_lease_shop-q-x",
            "KV_other",
        ] {
            assert!(!belongs_to(name, "shop"), "{name}");
        }
        assert!(belongs_to("GUST_SHOP_Q_X_Q_jobs", "shop-q-x"));
        assert!(belongs_to("KV_gust_kv_shop-q-x__seen", "shop-q-x"));
    }

    #[tokio::test]
    async fn delete_app_removes_queues_and_buckets_of_the_namespace() {
        const URL: &str = "nats://127.0.0.1:4222";
        let ns = format!("cleanup-test-{}", gust_ns_token());
        let queues = super::super::NatsQueues::connect(URL, &crate::services::nats_prefix(&ns))
            .await
            .expect("NATS must run on 127.0.0.1:4222 (scripts/setup.sh --services)");
        let queue = queues.queue("jobs").await.unwrap();
        queue.send(b"x".to_vec(), Default::default()).await.unwrap();
        let js = jetstream::new(queues.client());
        let kv = super::super::kv::NatsKv::with_context(js, &ns);
        kv.open("seen")
            .unwrap()
            .set("k", b"v".to_vec())
            .await
            .unwrap();
        let mut deleted = delete_app(URL, &ns).await.unwrap();
        deleted.sort();
        assert_eq!(
            deleted,
            [
                format!("GUST_{}_Q_jobs", ns.replace('-', "_").to_uppercase()),
                format!("KV_gust_kv_{ns}__seen"),
            ]
        );
        assert!(delete_app(URL, &ns).await.unwrap().is_empty());
    }

    /// A token unique to this run.
    fn gust_ns_token() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{}-{nanos:x}", std::process::id())
    }
}
