//! The cluster's shared state on PostgreSQL: deployed app versions (their
//! artifacts and release history), the apps' keys, and the nodes'
//! heartbeats. Every row carries the cluster's name, so many clusters can
//! share one database.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL could not be reached or refused the statement.
    #[error("cluster store on PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A rollback with no earlier version to return to.
    #[error("app `{0}` has no earlier version to roll back to")]
    NoEarlierVersion(String),
    /// An app that was never deployed.
    #[error("app `{0}` is not deployed to this cluster")]
    UnknownApp(String),
}

/// A store result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The version of an app the cluster serves now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// The app's name.
    pub app: String,
    /// Its version number (1, 2, ...).
    pub version: u32,
    /// SHA-256 of the artifact, hex.
    pub digest: String,
}

/// A node as its last heartbeat described it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    /// The node's id (`<hostname>-<pid>`).
    pub id: String,
    /// Where it listens.
    pub address: String,
    /// Seconds since its last heartbeat.
    pub seconds_since_heartbeat: f64,
    /// What it reported: the apps and versions it serves, what it owns.
    pub info: serde_json::Value,
}

/// The outcome of a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployed {
    /// The app.
    pub app: String,
    /// The version now current.
    pub version: u32,
    /// The artifact was the current one already: no new version.
    pub unchanged: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gust_cluster_artifacts (
    cluster text NOT NULL, app text NOT NULL, version integer NOT NULL,
    digest text NOT NULL, archive bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, app, version));
CREATE TABLE IF NOT EXISTS gust_cluster_releases (
    id bigserial PRIMARY KEY, cluster text NOT NULL, app text NOT NULL,
    version integer NOT NULL, rolled_back boolean NOT NULL DEFAULT false,
    at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS gust_cluster_releases_app ON gust_cluster_releases (cluster, app, id);
CREATE TABLE IF NOT EXISTS gust_cluster_keys (
    cluster text NOT NULL, app text NOT NULL, keys text NOT NULL,
    PRIMARY KEY (cluster, app));
CREATE TABLE IF NOT EXISTS gust_cluster_nodes (
    cluster text NOT NULL, node text NOT NULL, address text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(), info text NOT NULL,
    PRIMARY KEY (cluster, node));
";

/// Serialises schema creation across nodes starting at once
/// (`CREATE TABLE IF NOT EXISTS` races on PostgreSQL's catalog).
const SCHEMA_LOCK: i64 = 0x6775_7374_636c_7573; // "gustclus"

/// The cluster's shared state.
#[derive(Clone)]
pub struct ClusterStore {
    pool: PgPool,
    cluster: String,
}

impl ClusterStore {
    /// Connects to `url` and creates the tables if they are missing.
    pub async fn connect(url: &str, cluster: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Self {
            pool,
            cluster: cluster.to_string(),
        })
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Stores `archive` as the next version of `app` and makes it current;
    /// an archive equal to the current one changes nothing.
    pub async fn deploy(&self, app: &str, archive: &[u8], digest: &str) -> Result<Deployed> {
        let mut tx = self.pool.begin().await?;
        // One deploy or rollback of an app at a time, cluster-wide.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("gust-cluster/{}/{app}", self.cluster))
            .execute(&mut *tx)
            .await?;
        if let Some(current) = current_in(&mut tx, &self.cluster, app).await?
            && current.digest == digest
        {
            return Ok(Deployed {
                app: app.into(),
                version: current.version,
                unchanged: true,
            });
        }
        let version: i32 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM gust_cluster_artifacts WHERE cluster = $1 AND app = $2",
        )
        .bind(&self.cluster)
        .bind(app)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO gust_cluster_artifacts (cluster, app, version, digest, archive) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&self.cluster)
        .bind(app)
        .bind(version)
        .bind(digest)
        .bind(archive)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO gust_cluster_releases (cluster, app, version) VALUES ($1, $2, $3)",
        )
        .bind(&self.cluster)
        .bind(app)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Deployed {
            app: app.into(),
            version: version as u32,
            unchanged: false,
        })
    }

    /// Withdraws the current release of `app`: the one before it is current
    /// again. Repeating goes further back.
    pub async fn rollback(&self, app: &str) -> Result<Release> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("gust-cluster/{}/{app}", self.cluster))
            .execute(&mut *tx)
            .await?;
        let live: Vec<(i64, i32)> = sqlx::query_as(
            "SELECT id, version FROM gust_cluster_releases WHERE cluster = $1 AND app = $2 AND NOT rolled_back ORDER BY id DESC LIMIT 2",
        )
        .bind(&self.cluster)
        .bind(app)
        .fetch_all(&mut *tx)
        .await?;
        match live.as_slice() {
            [] => return Err(StoreError::UnknownApp(app.into())),
            [_] => return Err(StoreError::NoEarlierVersion(app.into())),
            [(id, _), ..] => {
                sqlx::query("UPDATE gust_cluster_releases SET rolled_back = true WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let current = current_in(&mut tx, &self.cluster, app)
            .await?
            .ok_or_else(|| StoreError::NoEarlierVersion(app.into()))?;
        tx.commit().await?;
        Ok(current)
    }

    /// The current release of every app of the cluster.
    pub async fn current(&self) -> Result<BTreeMap<String, Release>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (r.app) r.app, r.version, a.digest
               FROM gust_cluster_releases r
               JOIN gust_cluster_artifacts a
                 ON a.cluster = r.cluster AND a.app = r.app AND a.version = r.version
              WHERE r.cluster = $1 AND NOT r.rolled_back
              ORDER BY r.app, r.id DESC",
        )
        .bind(&self.cluster)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let release = Release {
                    app: row.get("app"),
                    version: row.get::<i32, _>("version") as u32,
                    digest: row.get("digest"),
                };
                (release.app.clone(), release)
            })
            .collect())
    }

    /// The artifact of `app` version `version`.
    pub async fn artifact(&self, app: &str, version: u32) -> Result<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT archive FROM gust_cluster_artifacts WHERE cluster = $1 AND app = $2 AND version = $3",
        )
        .bind(&self.cluster)
        .bind(app)
        .bind(version as i32)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::UnknownApp(app.into()))
    }

    /// The stored keys of `app` (JSON), if any.
    pub async fn keys(&self, app: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT keys FROM gust_cluster_keys WHERE cluster = $1 AND app = $2",
            )
            .bind(&self.cluster)
            .bind(app)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// Stores the keys of `app` (JSON).
    pub async fn save_keys(&self, app: &str, keys: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO gust_cluster_keys (cluster, app, keys) VALUES ($1, $2, $3)
             ON CONFLICT (cluster, app) DO UPDATE SET keys = EXCLUDED.keys",
        )
        .bind(&self.cluster)
        .bind(app)
        .bind(keys)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `node` (listening on `address`) is alive, with what it
    /// serves and owns.
    pub async fn heartbeat(
        &self,
        node: &str,
        address: &str,
        info: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO gust_cluster_nodes (cluster, node, address, info) VALUES ($1, $2, $3, $4)
             ON CONFLICT (cluster, node) DO UPDATE
                SET address = EXCLUDED.address, info = EXCLUDED.info, heartbeat_at = now()",
        )
        .bind(&self.cluster)
        .bind(node)
        .bind(address)
        .bind(info.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The nodes whose last heartbeat is younger than `timeout`, by id. Rows
    /// of nodes silent for ten timeouts are deleted.
    pub async fn live_nodes(&self, timeout: Duration) -> Result<Vec<NodeRecord>> {
        sqlx::query(
            "DELETE FROM gust_cluster_nodes WHERE cluster = $1 AND heartbeat_at < now() - make_interval(secs => $2)",
        )
        .bind(&self.cluster)
        .bind(timeout.as_secs_f64() * 10.0)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT node, address, info, EXTRACT(EPOCH FROM now() - heartbeat_at)::float8 AS age
               FROM gust_cluster_nodes
              WHERE cluster = $1 AND heartbeat_at >= now() - make_interval(secs => $2)
              ORDER BY node",
        )
        .bind(&self.cluster)
        .bind(timeout.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| NodeRecord {
                id: row.get("node"),
                address: row.get("address"),
                seconds_since_heartbeat: row.get("age"),
                info: serde_json::from_str(row.get::<&str, _>("info"))
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    /// Removes `node` (it is shutting down cleanly).
    pub async fn leave(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM gust_cluster_nodes WHERE cluster = $1 AND node = $2")
            .bind(&self.cluster)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every row of this cluster (tests clean up with it).
    pub async fn forget_cluster(&self) -> Result<()> {
        for table in [
            "gust_cluster_artifacts",
            "gust_cluster_releases",
            "gust_cluster_keys",
            "gust_cluster_nodes",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE cluster = $1"))
                .bind(&self.cluster)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// The current release of `app` inside a transaction.
async fn current_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    cluster: &str,
    app: &str,
) -> Result<Option<Release>> {
    let row = sqlx::query(
        "SELECT r.version, a.digest
           FROM gust_cluster_releases r
           JOIN gust_cluster_artifacts a
             ON a.cluster = r.cluster AND a.app = r.app AND a.version = r.version
          WHERE r.cluster = $1 AND r.app = $2 AND NOT r.rolled_back
          ORDER BY r.id DESC LIMIT 1",
    )
    .bind(cluster)
    .bind(app)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|row| Release {
        app: app.into(),
        version: row.get::<i32, _>("version") as u32,
        digest: row.get("digest"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

    fn unique(prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        )
    }

    #[tokio::test]
    async fn deploy_versions_rollback_and_heartbeats() {
        let store = ClusterStore::connect(PG, &unique("store")).await.unwrap();
        let d1 = store.deploy("shop", b"one", "d1").await.unwrap();
        assert_eq!((d1.version, d1.unchanged), (1, false));
        assert!(store.deploy("shop", b"one", "d1").await.unwrap().unchanged);
        let d2 = store.deploy("shop", b"two", "d2").await.unwrap();
        assert_eq!(d2.version, 2);
        assert_eq!(store.current().await.unwrap()["shop"].version, 2);
        assert_eq!(store.artifact("shop", 1).await.unwrap(), b"one");
        assert_eq!(store.rollback("shop").await.unwrap().version, 1);
        assert_eq!(store.current().await.unwrap()["shop"].version, 1);
        assert!(matches!(
            store.rollback("shop").await,
            Err(StoreError::NoEarlierVersion(_))
        ));
        assert!(matches!(
            store.rollback("nope").await,
            Err(StoreError::UnknownApp(_))
        ));
        // A deploy after a rollback gets a new number.
        assert_eq!(
            store.deploy("shop", b"three", "d3").await.unwrap().version,
            3
        );

        store
            .heartbeat(
                "n1",
                "127.0.0.1:1",
                &serde_json::json!({"apps": {"shop": 3}}),
            )
            .await
            .unwrap();
        let nodes = store.live_nodes(Duration::from_secs(10)).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].info["apps"]["shop"], 3);
        assert!(store.live_nodes(Duration::ZERO).await.unwrap().is_empty());
        store.leave("n1").await.unwrap();
        store.forget_cluster().await.unwrap();
        assert!(store.current().await.unwrap().is_empty());
    }
}
