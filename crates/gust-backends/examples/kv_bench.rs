//! Key-value get and put operations per second through the kv binding's
//! engines (`RedisKv`, `NatsKv`, `PgKv`) against the raw client doing the
//! same work (`redis` SET/GET, async-nats KV put/get, sqlx upsert/select),
//! 8 callers at once, in one run.
//!
//! ```sh
//! cargo run --release -p gust-backends --example kv_bench -- [ops=5000]
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use gust_backends::KeyValueProvider;

const CALLERS: usize = 8;
const VALUE: &[u8] = &[7u8; 128];

/// Runs `op(i)` for `i` in `0..ops`, `CALLERS` at once; returns ops/s.
async fn rate<F, Fut>(ops: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let per = ops / CALLERS;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    op(c * per + i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per * CALLERS) as f64 / start.elapsed().as_secs_f64()
}

fn row(engine: &str, what: &str, gust: f64, raw: f64) {
    println!(
        "| {engine} | {what} | {gust:.0} | {raw:.0} | {:.2} |",
        gust / raw
    );
}

#[tokio::main]
async fn main() {
    let ops: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let ns = format!("kvbench{}", std::process::id());
    println!("| engine | op | gust ops/s | raw ops/s | gust/raw |");
    println!("|---|---|---:|---:|---:|");

    // Redis.
    let kv = gust_backends::redis::RedisKv::connect("redis://127.0.0.1:6379", &ns)
        .await
        .unwrap();
    let store = kv.open("b").unwrap();
    let conn = gust_backends::redis::connect("redis://127.0.0.1:6379")
        .await
        .unwrap();
    for round in 0..2 {
        let s = store.clone();
        let put = rate(ops, move |i| {
            let s = s.clone();
            async move { s.set(&format!("k{i}"), VALUE.to_vec()).await.unwrap() }
        })
        .await;
        let c = conn.clone();
        let raw_put = rate(ops, move |i| {
            let mut c = c.clone();
            async move {
                let _: () = redis::cmd("SET")
                    .arg(format!("raw:{i}"))
                    .arg(VALUE)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        let s = store.clone();
        let get = rate(ops, move |i| {
            let s = s.clone();
            async move {
                s.get(&format!("k{i}")).await.unwrap().unwrap();
            }
        })
        .await;
        let c = conn.clone();
        let raw_get = rate(ops, move |i| {
            let mut c = c.clone();
            async move {
                let _: Vec<u8> = redis::cmd("GET")
                    .arg(format!("raw:{i}"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        if round == 1 {
            row("redis", "put", put, raw_put);
            row("redis", "get", get, raw_get);
        }
    }
    gust_backends::redis::delete_namespace(&conn, &ns)
        .await
        .unwrap();
    let mut c = conn.clone();
    for i in 0..ops {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("raw:{i}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }

    // NATS KV.
    let url = "nats://127.0.0.1:4222";
    let kv = gust_backends::nats::kv::NatsKv::connect(url, &ns)
        .await
        .unwrap();
    let store = kv.open("b").unwrap();
    store.set("warm", VALUE.to_vec()).await.unwrap();
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = format!("rawkv{}", std::process::id());
    let raw = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            allow_direct: true,
            allow_rollup: true,
            deny_delete: true,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .ok();
    let _ = raw;
    let raw = js.get_key_value(&bucket).await.unwrap();
    for round in 0..2 {
        let s = store.clone();
        let put = rate(ops, move |i| {
            let s = s.clone();
            async move { s.set(&format!("k{i}"), VALUE.to_vec()).await.unwrap() }
        })
        .await;
        let r = raw.clone();
        let raw_put = rate(ops, move |i| {
            let r = r.clone();
            async move {
                r.put(format!("k{i}"), VALUE.to_vec().into()).await.unwrap();
            }
        })
        .await;
        let s = store.clone();
        let get = rate(ops, move |i| {
            let s = s.clone();
            async move {
                s.get(&format!("k{i}")).await.unwrap().unwrap();
            }
        })
        .await;
        let r = raw.clone();
        let raw_get = rate(ops, move |i| {
            let r = r.clone();
            async move {
                r.get(format!("k{i}")).await.unwrap().unwrap();
            }
        })
        .await;
        if round == 1 {
            row("nats", "put", put, raw_put);
            row("nats", "get", get, raw_get);
        }
    }
    gust_backends::nats::kv::delete_namespace(url, &ns)
        .await
        .unwrap();
    js.delete_stream(format!("KV_{bucket}")).await.unwrap();

    // PostgreSQL.
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    let kv = gust_backends::postgres::kv::PgKv::connect(pg, &ns)
        .await
        .unwrap();
    let store = kv.open("b").unwrap();
    let pool = gust_backends::postgres::connect(pg).await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {ns}_raw (k text PRIMARY KEY, v bytea NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    for round in 0..2 {
        let s = store.clone();
        let put = rate(ops, move |i| {
            let s = s.clone();
            async move { s.set(&format!("k{i}"), VALUE.to_vec()).await.unwrap() }
        })
        .await;
        let (p, table) = (pool.clone(), format!("{ns}_raw"));
        let raw_put = rate(ops, move |i| {
            let (p, table) = (p.clone(), table.clone());
            async move {
                sqlx::query(&format!(
                    "INSERT INTO {table} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                ))
                .bind(format!("k{i}"))
                .bind(VALUE)
                .execute(&p)
                .await
                .unwrap();
            }
        })
        .await;
        let s = store.clone();
        let get = rate(ops, move |i| {
            let s = s.clone();
            async move {
                s.get(&format!("k{i}")).await.unwrap().unwrap();
            }
        })
        .await;
        let (p, table) = (pool.clone(), format!("{ns}_raw"));
        let raw_get = rate(ops, move |i| {
            let (p, table) = (p.clone(), table.clone());
            async move {
                let _: Vec<u8> = sqlx::query_scalar(&format!("SELECT v FROM {table} WHERE k = $1"))
                    .bind(format!("k{i}"))
                    .fetch_one(&p)
                    .await
                    .unwrap();
            }
        })
        .await;
        if round == 1 {
            row("postgres", "put", put, raw_put);
            row("postgres", "get", get, raw_get);
        }
    }
    for statement in [
        format!("DROP TABLE {ns}_raw"),
        format!(
            "DROP SCHEMA {} CASCADE",
            gust_backends::postgres::schema_name(&ns)
        ),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
}
