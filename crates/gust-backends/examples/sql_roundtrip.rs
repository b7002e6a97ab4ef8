//! One-row `SELECT` round trips per second through the sql binding
//! (`PgSql`, `MySqlSql`) against raw sqlx on the same pool, one caller at a
//! time and 8 at once.
//!
//! ```sh
//! cargo run --release -p gust-backends --example sql_roundtrip -- [rounds]
//! ```
//!
//! Servers: `GUST_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `GUST_BENCH_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use gust_backends::mysql::MySqlSql;
use gust_backends::postgres::sql::PgSql;
use gust_backends::{Sql, SqlValue};

const NAME: &str = "roundtrip";
const CONCURRENCY: usize = 8;

/// Runs `round` `rounds` times with `callers` at once; returns rounds/s.
async fn rate<F, Fut>(rounds: usize, callers: usize, round: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let round = Arc::new(round);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let round = round.clone();
            tokio::spawn(async move {
                for _ in 0..rounds / callers {
                    round().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (rounds / callers * callers) as f64 / start.elapsed().as_secs_f64()
}

async fn setup(db: &dyn Sql) {
    db.execute_script(
        "CREATE TABLE IF NOT EXISTS kv (id BIGINT PRIMARY KEY, v TEXT);
         DELETE FROM kv;
         INSERT INTO kv (id, v) VALUES (1, 'one')",
    )
    .await
    .unwrap();
}

fn report(engine: &str, callers: usize, binding: f64, raw: f64) {
    println!(
        "{engine:<9} callers={callers}  binding {binding:>8.0}/s  raw sqlx {raw:>8.0}/s  binding/raw {:.2}",
        binding / raw
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5000, |s| s.parse().expect("rounds"));
    let pg_url = std::env::var("GUST_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let my_url = std::env::var("GUST_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());

    let pg = PgSql::connect(&pg_url, "bench").await.unwrap();
    let db = pg.database(NAME).unwrap();
    setup(db.as_ref()).await;
    for callers in [1, CONCURRENCY] {
        // Warm up both paths (statement caches, pool).
        let d = db.clone();
        rate(200, callers, move || {
            let d = d.clone();
            async move {
                d.query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
            }
        })
        .await;
        let d = db.clone();
        let binding = rate(rounds, callers, move || {
            let d = d.clone();
            async move {
                let rows = d
                    .query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
                assert_eq!(rows.rows.len(), 1);
            }
        })
        .await;
        let pool = db.pool().clone();
        let raw = rate(rounds, callers, move || {
            let pool = pool.clone();
            async move {
                let v: String = sqlx::query_scalar("SELECT v FROM kv WHERE id = $1")
                    .bind(1i64)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(v, "one");
            }
        })
        .await;
        report("postgres", callers, binding, raw);
    }
    pg.drop_database(NAME).await.unwrap();

    let my = MySqlSql::connect(&my_url, "bench").await.unwrap();
    let db = my.database(NAME).unwrap();
    setup(db.as_ref()).await;
    for callers in [1, CONCURRENCY] {
        let d = db.clone();
        rate(200, callers, move || {
            let d = d.clone();
            async move {
                d.query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
            }
        })
        .await;
        let d = db.clone();
        let binding = rate(rounds, callers, move || {
            let d = d.clone();
            async move {
                let rows = d
                    .query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
                assert_eq!(rows.rows.len(), 1);
            }
        })
        .await;
        let pool = db.pool().clone();
        let raw = rate(rounds, callers, move || {
            let pool = pool.clone();
            async move {
                let v: String = sqlx::query_scalar("SELECT v FROM kv WHERE id = ?")
                    .bind(1i64)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(v, "one");
            }
        })
        .await;
        report("mysql", callers, binding, raw);
    }
    my.drop_database(NAME).await.unwrap();
}
