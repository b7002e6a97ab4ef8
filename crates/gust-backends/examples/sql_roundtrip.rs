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

/// Measures the binding and raw sqlx alternately (after a warm-up of
/// both), twice each, and prints the better rate of each.
async fn compare<B, BF, R, RF>(engine: &str, rounds: usize, binding: B, raw: R)
where
    B: Fn() -> BF + Clone + Send + Sync + 'static,
    BF: Future<Output = ()> + Send,
    R: Fn() -> RF + Clone + Send + Sync + 'static,
    RF: Future<Output = ()> + Send,
{
    for callers in [1, CONCURRENCY] {
        rate(200, callers, binding.clone()).await;
        rate(200, callers, raw.clone()).await;
        let (mut best_binding, mut best_raw) = (0f64, 0f64);
        for _ in 0..2 {
            best_raw = best_raw.max(rate(rounds, callers, raw.clone()).await);
            best_binding = best_binding.max(rate(rounds, callers, binding.clone()).await);
        }
        println!(
            "{engine:<9} callers={callers}  binding {best_binding:>8.0}/s  raw sqlx {best_raw:>8.0}/s  binding/raw {:.2}",
            best_binding / best_raw
        );
    }
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
    let pool = db.pool().clone();
    compare(
        "postgres",
        rounds,
        move || {
            let db = db.clone();
            async move {
                let rows = db
                    .query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
                assert_eq!(rows.rows.len(), 1);
            }
        },
        move || {
            let pool = pool.clone();
            async move {
                let v: Vec<String> = sqlx::query_scalar("SELECT v FROM kv WHERE id = $1")
                    .bind(1i64)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                assert_eq!(v, ["one"]);
            }
        },
    )
    .await;
    pg.drop_database(NAME).await.unwrap();

    let my = MySqlSql::connect(&my_url, "bench").await.unwrap();
    let db = my.database(NAME).unwrap();
    setup(db.as_ref()).await;
    let pool = db.pool().clone();
    compare(
        "mysql",
        rounds,
        move || {
            let db = db.clone();
            async move {
                let rows = db
                    .query("SELECT v FROM kv WHERE id = ?", vec![SqlValue::Integer(1)])
                    .await
                    .unwrap();
                assert_eq!(rows.rows.len(), 1);
            }
        },
        move || {
            let pool = pool.clone();
            async move {
                let v: Vec<String> = sqlx::query_scalar("SELECT v FROM kv WHERE id = ?")
                    .bind(1i64)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                assert_eq!(v, ["one"]);
            }
        },
    )
    .await;
    my.drop_database(NAME).await.unwrap();
}
