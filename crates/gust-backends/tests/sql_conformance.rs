//! One conformance suite for every [`SqlProvider`]: each case is an async fn
//! over an [`Engine`], which opens providers on the same storage as often
//! as a case asks (to test what survives a reopen). Engines: embedded
//! (SQLite), `postgres` (PostgreSQL at 127.0.0.1:5432) and `mysql` (MariaDB
//! / MySQL at 127.0.0.1:3306); override the servers with
//! `GUST_TEST_POSTGRES_URL` and `GUST_TEST_MYSQL_URL`.
//!
//! The SQL here is the contract: it runs unchanged on every engine, except
//! the one thing no common spelling exists for, the blob column type
//! ([`Engine::blob_type`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gust_backends::{SqlProvider, SqlStatement, SqlValue};

/// Resource names the cases use (dropped after each case).
const NAMES: [&str; 2] = ["main", "other"];

enum Kind {
    Embedded(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(String),
    #[cfg(feature = "mysql")]
    MySql(String),
}

/// One engine and the storage a case works on.
struct Engine {
    kind: Kind,
    /// A namespace no other test (or earlier run) uses.
    namespace: String,
}

fn unique_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}x{}x{n}", std::process::id(), nanos % 1_000_000_000)
}

#[cfg(feature = "postgres")]
fn postgres_url() -> String {
    std::env::var("GUST_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[cfg(feature = "mysql")]
fn mysql_url() -> String {
    std::env::var("GUST_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

impl Engine {
    fn embedded() -> Self {
        Self {
            kind: Kind::Embedded(tempfile::tempdir().unwrap()),
            namespace: unique_namespace(),
        }
    }

    #[cfg(feature = "postgres")]
    fn postgres() -> Self {
        Self {
            kind: Kind::Postgres(postgres_url()),
            namespace: unique_namespace(),
        }
    }

    #[cfg(feature = "mysql")]
    fn mysql() -> Self {
        Self {
            kind: Kind::MySql(mysql_url()),
            namespace: unique_namespace(),
        }
    }

    /// The engine's name as its errors spell it.
    fn name(&self) -> &'static str {
        match &self.kind {
            Kind::Embedded(_) => "embedded sql",
            #[cfg(feature = "postgres")]
            Kind::Postgres(_) => "postgres sql",
            #[cfg(feature = "mysql")]
            Kind::MySql(_) => "mysql sql",
        }
    }

    /// A column type for blobs of any size (no spelling is common to all).
    fn blob_type(&self) -> &'static str {
        match &self.kind {
            Kind::Embedded(_) => "BLOB",
            #[cfg(feature = "postgres")]
            Kind::Postgres(_) => "BYTEA",
            #[cfg(feature = "mysql")]
            Kind::MySql(_) => "LONGBLOB",
        }
    }

    /// A new provider over the engine's storage.
    async fn provider(&self) -> Arc<dyn SqlProvider> {
        match &self.kind {
            Kind::Embedded(dir) => Arc::new(gust_backends::embedded::EmbeddedSql::new(dir.path())),
            #[cfg(feature = "postgres")]
            Kind::Postgres(url) => Arc::new(
                gust_backends::postgres::sql::PgSql::connect(url, &self.namespace)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432"),
            ),
            #[cfg(feature = "mysql")]
            Kind::MySql(url) => Arc::new(
                gust_backends::mysql::MySqlSql::connect(url, &self.namespace)
                    .await
                    .expect("MariaDB / MySQL must run at 127.0.0.1:3306"),
            ),
        }
    }

    /// Drops what the case created.
    async fn cleanup(&self) {
        match &self.kind {
            Kind::Embedded(_) => {}
            #[cfg(feature = "postgres")]
            Kind::Postgres(url) => {
                let p = gust_backends::postgres::sql::PgSql::connect(url, &self.namespace)
                    .await
                    .unwrap();
                for name in NAMES {
                    p.drop_database(name).await.unwrap();
                }
            }
            #[cfg(feature = "mysql")]
            Kind::MySql(url) => {
                let p = gust_backends::mysql::MySqlSql::connect(url, &self.namespace)
                    .await
                    .unwrap();
                for name in NAMES {
                    p.drop_database(name).await.unwrap();
                }
            }
        }
    }
}

/// Runs `case` on `engine`, then cleans up, also when the case panicked.
async fn run<F, Fut>(engine: Engine, case: F)
where
    F: FnOnce(Arc<Engine>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let engine = Arc::new(engine);
    let result = tokio::spawn(case(engine.clone())).await;
    engine.cleanup().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn int(i: i64) -> SqlValue {
    SqlValue::Integer(i)
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.into())
}

fn stmt(sql: &str, params: Vec<SqlValue>) -> SqlStatement {
    SqlStatement {
        sql: sql.into(),
        params,
    }
}

async fn count(db: &dyn gust_backends::Sql, table: &str) -> i64 {
    let rows = db
        .query(&format!("SELECT COUNT(*) FROM {table}"), vec![])
        .await
        .unwrap();
    match rows.rows[0][0] {
        SqlValue::Integer(n) => n,
        ref other => panic!("COUNT(*) gave {other:?}"),
    }
}

// ---------------------------------------------------------------- cases

async fn every_value_kind_round_trips(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script(&format!(
        "CREATE TABLE vals (id INTEGER PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, s TEXT, b {})",
        e.blob_type()
    ))
    .await
    .unwrap();
    let big: Vec<u8> = (0..(2 << 20)).map(|i| (i * 7 % 256) as u8).collect();
    let unicode = "héllo wörld ✓ 日本語 🎉 'quoted' \"double\" \\ back";
    let rows = [
        vec![
            int(1),
            int(i64::MIN),
            SqlValue::Real(-1.5e300),
            text(""),
            SqlValue::Blob(vec![]),
        ],
        vec![
            int(2),
            int(i64::MAX),
            SqlValue::Real(0.1),
            text(unicode),
            SqlValue::Blob(vec![0, 255, 0]),
        ],
        vec![
            int(3),
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Null,
            SqlValue::Null,
        ],
        vec![
            int(4),
            int(0),
            SqlValue::Real(2.0),
            text("x"),
            SqlValue::Blob(big.clone()),
        ],
    ];
    for row in &rows {
        let n = db
            .execute(
                "INSERT INTO vals (id, i, r, s, b) VALUES (?1, ?2, ?3, ?4, ?5)",
                row.clone(),
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let got = db
        .query("SELECT id, i, r, s, b FROM vals ORDER BY id", vec![])
        .await
        .unwrap();
    assert_eq!(got.columns, ["id", "i", "r", "s", "b"]);
    assert_eq!(got.rows.len(), rows.len());
    for (got, want) in got.rows.iter().zip(&rows) {
        assert_eq!(got, want, "{}", e.name());
    }
    // Parameters compare against columns of every kind.
    let got = db
        .query(
            "SELECT id FROM vals WHERE i = ?1 AND r = ?2 AND s = ?3",
            vec![int(i64::MAX), SqlValue::Real(0.1), text(unicode)],
        )
        .await
        .unwrap();
    assert_eq!(got.rows, vec![vec![int(2)]]);
    // An empty result still names its columns.
    let got = db
        .query("SELECT id, s FROM vals WHERE id = ?", vec![int(99)])
        .await
        .unwrap();
    assert_eq!(got.columns, ["id", "s"]);
    assert!(got.rows.is_empty());
}

async fn integers_go_into_text_and_real_columns(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE t (s TEXT, r DOUBLE PRECISION, i BIGINT)")
        .await
        .unwrap();
    db.execute(
        "INSERT INTO t (s, r, i) VALUES (?, ?, ?)",
        vec![int(42), int(7), SqlValue::Real(3.0)],
    )
    .await
    .unwrap();
    let got = db.query("SELECT s, r, i FROM t", vec![]).await.unwrap();
    assert_eq!(
        got.rows,
        vec![vec![text("42"), SqlValue::Real(7.0), int(3)]]
    );
    // Aggregates of integers stay integers; averages are reals.
    db.execute("INSERT INTO t (s, r, i) VALUES ('a', 0.5, 4)", vec![])
        .await
        .unwrap();
    let got = db
        .query(
            "SELECT SUM(i) AS total, COUNT(*) AS n, MAX(r) AS top, SUM(r) AS rs FROM t",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(got.columns, ["total", "n", "top", "rs"]);
    assert_eq!(
        got.rows,
        vec![vec![
            int(7),
            int(2),
            SqlValue::Real(7.0),
            SqlValue::Real(7.5)
        ]]
    );
}

async fn positional_and_numbered_placeholders(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE p (a BIGINT, b TEXT, c BIGINT)")
        .await
        .unwrap();
    db.execute(
        "INSERT INTO p (a, b, c) VALUES (?, ?, ?)",
        vec![int(1), text("one"), int(10)],
    )
    .await
    .unwrap();
    // Numbered out of order.
    db.execute(
        "INSERT INTO p (c, b, a) VALUES (?3, ?2, ?1)",
        vec![int(2), text("two"), int(20)],
    )
    .await
    .unwrap();
    // A number used twice.
    db.execute(
        "INSERT INTO p (a, b, c) VALUES (?1, ?2, ?1)",
        vec![int(3), text("three")],
    )
    .await
    .unwrap();
    let got = db
        .query("SELECT a, b, c FROM p ORDER BY a", vec![])
        .await
        .unwrap();
    assert_eq!(
        got.rows,
        vec![
            vec![int(1), text("one"), int(10)],
            vec![int(2), text("two"), int(20)],
            vec![int(3), text("three"), int(3)],
        ]
    );
    let got = db
        .query(
            "SELECT b FROM p WHERE a = ?2 OR c = ?1 ORDER BY a",
            vec![int(10), int(3)],
        )
        .await
        .unwrap();
    assert_eq!(got.rows, vec![vec![text("one")], vec![text("three")]]);
    // Too few values is an error, not a NULL.
    let err = db
        .query("SELECT b FROM p WHERE a = ?2", vec![int(1)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains(e.name()), "{err}");
}

async fn optional_filters_and_untyped_parameters(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script(
        "CREATE TABLE f (id BIGINT, s TEXT); INSERT INTO f (id, s) VALUES (1, 'a'), (2, 'b')",
    )
    .await
    .unwrap();
    // "No filter when the parameter is NULL."
    let sql = "SELECT id FROM f WHERE ?1 IS NULL OR s = ?1 ORDER BY id";
    let got = db.query(sql, vec![SqlValue::Null]).await.unwrap();
    assert_eq!(got.rows, vec![vec![int(1)], vec![int(2)]]);
    let got = db.query(sql, vec![text("b")]).await.unwrap();
    assert_eq!(got.rows, vec![vec![int(2)]]);
    // A parameter nothing gives a type to.
    let sql = "SELECT COUNT(*) FROM f WHERE ?1 IS NOT NULL";
    let got = db.query(sql, vec![SqlValue::Null]).await.unwrap();
    assert_eq!(got.rows, vec![vec![int(0)]]);
    let got = db.query(sql, vec![int(7)]).await.unwrap();
    assert_eq!(got.rows, vec![vec![int(2)]]);
}

/// Parameters PostgreSQL cannot type (or types two ways) inside a
/// transaction: declaring them must not cost the transaction.
async fn untyped_parameters_in_transactions(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE ut (id BIGINT, s VARCHAR(64))")
        .await
        .unwrap();
    let statements = || {
        vec![
            stmt("INSERT INTO ut (id, s) VALUES (1, 'a')", vec![]),
            // `?1` is text in the select list and varchar in the filter.
            stmt(
                "INSERT INTO ut (id, s) SELECT 2, ?1 FROM ut WHERE s <> ?1",
                vec![text("b")],
            ),
            // Nothing gives `?1` a type.
            stmt(
                "UPDATE ut SET s = 'c' WHERE ?1 IS NULL AND s = ?2",
                vec![SqlValue::Null, text("a")],
            ),
        ]
    };
    for round in 0..3 {
        let changed = db.transaction(statements()).await.unwrap();
        assert_eq!(changed, [1, 1 + round, 1], "round {round}");
    }
    assert_eq!(count(&*db, "ut").await, 9);
    let got = db
        .query("SELECT id, s FROM ut WHERE id = 2 ORDER BY s", vec![])
        .await
        .unwrap();
    assert_eq!(got.rows.len(), 6);
}

async fn question_marks_in_literals_are_left_alone(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE q (id BIGINT, s TEXT)")
        .await
        .unwrap();
    db.execute(
        "INSERT INTO q (id, s) VALUES (?, 'what? why?'), (?, 'it''s ?1')",
        vec![int(1), int(2)],
    )
    .await
    .unwrap();
    let got = db
        .query(
            "SELECT id, s AS \"what?\" FROM q WHERE s <> '?' /* ? */ AND id >= ? -- ?\nORDER BY id",
            vec![int(1)],
        )
        .await
        .unwrap();
    assert_eq!(got.columns, ["id", "what?"]);
    assert_eq!(
        got.rows,
        vec![
            vec![int(1), text("what? why?")],
            vec![int(2), text("it's ?1")]
        ]
    );
}

async fn rows_changed_are_counted(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE c (id BIGINT, v TEXT)")
        .await
        .unwrap();
    let n = db
        .execute(
            "INSERT INTO c (id, v) VALUES (1, 'a'), (2, 'a'), (3, 'b')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let n = db
        .execute("UPDATE c SET v = ? WHERE id >= ?", vec![text("z"), int(2)])
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Rows that matched count even when the value did not change.
    let n = db
        .execute("UPDATE c SET v = 'z' WHERE id >= 2", vec![])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = db
        .execute("UPDATE c SET v = 'q' WHERE id > 99", vec![])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let n = db.execute("DELETE FROM c", vec![]).await.unwrap();
    assert_eq!(n, 3);
}

async fn transactions_commit_together(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE tx (id BIGINT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    let changed = db
        .transaction(vec![
            stmt(
                "INSERT INTO tx (id, v) VALUES (?1, ?2)",
                vec![int(1), text("a")],
            ),
            stmt(
                "INSERT INTO tx (id, v) VALUES (?1, ?2)",
                vec![int(2), text("b")],
            ),
            stmt(
                "UPDATE tx SET v = ?1 WHERE id <= ?2",
                vec![text("c"), int(2)],
            ),
            stmt("DELETE FROM tx WHERE id = 3", vec![]),
        ])
        .await
        .unwrap();
    assert_eq!(changed, vec![1, 1, 2, 0]);
    assert_eq!(count(db.as_ref(), "tx").await, 2);
}

async fn a_failing_statement_rolls_back_the_transaction(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE tx (id BIGINT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    db.execute("INSERT INTO tx (id, v) VALUES (1, 'kept')", vec![])
        .await
        .unwrap();
    let err = db
        .transaction(vec![
            stmt("UPDATE tx SET v = 'lost' WHERE id = 1", vec![]),
            stmt("INSERT INTO tx (id, v) VALUES (2, 'lost')", vec![]),
            stmt("INSERT INTO tx (id, v) VALUES (1, 'duplicate')", vec![]),
        ])
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(e.name()), "{message}");
    assert!(
        message.contains("INSERT INTO tx (id, v) VALUES (1, 'duplicate')"),
        "{message}"
    );
    let got = db
        .query("SELECT id, v FROM tx ORDER BY id", vec![])
        .await
        .unwrap();
    assert_eq!(got.rows, vec![vec![int(1), text("kept")]]);
    // The connection is usable again afterwards.
    let changed = db
        .transaction(vec![stmt("INSERT INTO tx (id, v) VALUES (2, 'b')", vec![])])
        .await
        .unwrap();
    assert_eq!(changed, vec![1]);
    assert_eq!(count(db.as_ref(), "tx").await, 2);
}

async fn scripts_run_several_statements(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script(
        "CREATE TABLE s1 (id BIGINT, note TEXT);
         -- a comment; with a semicolon
         INSERT INTO s1 (id, note) VALUES (1, 'a;b');
         CREATE TABLE s2 (id BIGINT);
         INSERT INTO s2 (id) SELECT id FROM s1;
         /* trailing; */",
    )
    .await
    .unwrap();
    let got = db
        .query("SELECT s1.note FROM s1 JOIN s2 ON s1.id = s2.id", vec![])
        .await
        .unwrap();
    assert_eq!(got.rows, vec![vec![text("a;b")]]);
    // A failing statement in a script names itself; the data written
    // before it in the script is not kept (DML; MySQL commits DDL anyway).
    let err = db
        .execute_script(
            "INSERT INTO s1 (id, note) VALUES (2, 'no'); INSERT INTO missing_table VALUES (1)",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("INSERT INTO missing_table"),
        "{err}"
    );
    assert_eq!(count(db.as_ref(), "s1").await, 1);
}

async fn resources_are_isolated(e: Arc<Engine>) {
    let provider = e.provider().await;
    let main = provider.open("main").unwrap();
    let other = provider.open("other").unwrap();
    for (db, v) in [(&main, "in main"), (&other, "in other")] {
        db.execute_script("CREATE TABLE iso (v TEXT)")
            .await
            .unwrap();
        db.execute("INSERT INTO iso (v) VALUES (?)", vec![text(v)])
            .await
            .unwrap();
    }
    let got = main.query("SELECT v FROM iso", vec![]).await.unwrap();
    assert_eq!(got.rows, vec![vec![text("in main")]]);
    let got = other.query("SELECT v FROM iso", vec![]).await.unwrap();
    assert_eq!(got.rows, vec![vec![text("in other")]]);
    // A table of one is not visible from the other.
    main.execute_script("CREATE TABLE only_main (v TEXT)")
        .await
        .unwrap();
    assert!(
        other
            .query("SELECT v FROM only_main", vec![])
            .await
            .is_err()
    );
}

async fn data_survives_reopening(e: Arc<Engine>) {
    {
        let db = e.provider().await.open("main").unwrap();
        db.execute_script("CREATE TABLE kept (v TEXT)")
            .await
            .unwrap();
        db.execute("INSERT INTO kept (v) VALUES ('still here')", vec![])
            .await
            .unwrap();
    }
    let db = e.provider().await.open("main").unwrap();
    let got = db.query("SELECT v FROM kept", vec![]).await.unwrap();
    assert_eq!(got.rows, vec![vec![text("still here")]]);
}

async fn errors_name_the_engine_and_statement(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    let err = db.query("SELEC 1", vec![]).await.unwrap_err().to_string();
    assert!(err.contains(e.name()) && err.contains("`SELEC 1`"), "{err}");
    let err = db
        .execute("INSERT INTO no_such_table (x) VALUES (?)", vec![int(1)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("INSERT INTO no_such_table (x) VALUES (?)"),
        "{err}"
    );
    assert!(err.contains("no_such_table"), "{err}");
    // Long statements are shortened.
    let long = format!("SELECT {} FROM nowhere", "1, ".repeat(200));
    let err = db.query(&long, vec![]).await.unwrap_err().to_string();
    let quoted = err.split('`').nth(1).unwrap();
    assert!(long.starts_with(quoted.trim_end_matches("...")), "{err}");
    assert!(quoted.len() <= 203, "{err}");
}

async fn concurrent_writers(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE w (writer BIGINT, n BIGINT)")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let db = db.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    if n % 5 == 0 {
                        db.transaction(vec![
                            stmt(
                                "INSERT INTO w (writer, n) VALUES (?, ?)",
                                vec![int(writer), int(n)],
                            ),
                            stmt("UPDATE w SET n = n WHERE writer = ?", vec![int(writer)]),
                        ])
                        .await
                        .unwrap();
                    } else {
                        db.execute(
                            "INSERT INTO w (writer, n) VALUES (?, ?)",
                            vec![int(writer), int(n)],
                        )
                        .await
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(db.as_ref(), "w").await, 160);
    let got = db
        .query("SELECT COUNT(DISTINCT writer) FROM w", vec![])
        .await
        .unwrap();
    assert_eq!(got.rows, vec![vec![int(8)]]);
}

async fn schema_changes_are_seen_by_later_statements(e: Arc<Engine>) {
    let db = e.provider().await.open("main").unwrap();
    db.execute_script("CREATE TABLE sc (x BIGINT); INSERT INTO sc (x) VALUES (1)")
        .await
        .unwrap();
    // Run the same text on (likely) every pooled connection first.
    for _ in 0..3 {
        let got = db.query("SELECT * FROM sc", vec![]).await.unwrap();
        assert_eq!(got.columns, ["x"]);
    }
    db.execute_script("ALTER TABLE sc ADD COLUMN y TEXT")
        .await
        .unwrap();
    db.execute("UPDATE sc SET y = 'new'", vec![]).await.unwrap();
    for _ in 0..3 {
        let got = db.query("SELECT * FROM sc", vec![]).await.unwrap();
        assert_eq!(got.columns, ["x", "y"]);
        assert_eq!(got.rows, vec![vec![int(1), text("new")]]);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run(super::Engine::embedded(), super::$case).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run(super::Engine::postgres(), super::$case).await;
                }
            )*
        }

        #[cfg(feature = "mysql")]
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run(super::Engine::mysql(), super::$case).await;
                }
            )*
        }
    };
}

conformance!(
    every_value_kind_round_trips,
    integers_go_into_text_and_real_columns,
    positional_and_numbered_placeholders,
    question_marks_in_literals_are_left_alone,
    optional_filters_and_untyped_parameters,
    untyped_parameters_in_transactions,
    rows_changed_are_counted,
    transactions_commit_together,
    a_failing_statement_rolls_back_the_transaction,
    scripts_run_several_statements,
    resources_are_isolated,
    data_survives_reopening,
    errors_name_the_engine_and_statement,
    concurrent_writers,
    schema_changes_are_seen_by_later_statements,
);

// ------------------------------------------------ engine-specific mappings

/// PostgreSQL's own types, both ways.
#[cfg(feature = "postgres")]
mod postgres_types {
    use super::*;
    use gust_backends::postgres::sql::PgSql;

    async fn types(e: Arc<Engine>) {
        let db = e.provider().await.open("main").unwrap();
        db.execute_script(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE TABLE ty (
                 b BOOLEAN, s SMALLINT, n NUMERIC(10, 2), n0 NUMERIC, u UUID, j JSONB,
                 d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, t TIME, vc VARCHAR(10), c CHAR(3),
                 f REAL, m mood)",
        )
        .await
        .unwrap();
        let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        db.execute(
            "INSERT INTO ty VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                int(1),
                int(5),
                SqlValue::Real(1.5),
                int(12),
                text(uuid),
                text(r#"{"a": [1, "x?"]}"#),
                text("2026-12-03"),
                text("2026-12-03 08:05:07.5"),
                text("2026-12-03 10:00:00+02:00"),
                text("10:30"),
                int(5),
                text("ab"),
                int(2),
                text("sad"),
            ],
        )
        .await
        .unwrap();
        let got = db.query("SELECT * FROM ty", vec![]).await.unwrap();
        assert_eq!(
            got.rows,
            vec![vec![
                int(1),
                int(5),
                SqlValue::Real(1.5),
                int(12),
                text(uuid),
                text(r#"{"a": [1, "x?"]}"#),
                text("2026-12-03"),
                text("2026-12-03 08:05:07.5"),
                text("2026-12-03 08:00:00+00"),
                text("10:30:00"),
                text("5"),
                text("ab "),
                SqlValue::Real(2.0),
                text("sad"),
            ]]
        );
        // Parameters compare in the column's type.
        let got = db
            .query(
                "SELECT COUNT(*) FROM ty WHERE u = ? AND d = ? AND b = ? AND n > ? AND vc = ?",
                vec![text(uuid), text("2026-12-03"), int(1), int(1), int(5)],
            )
            .await
            .unwrap();
        assert_eq!(got.rows, vec![vec![int(1)]]);
        // NULL in every type.
        db.execute(
            "INSERT INTO ty (b, u, d, j) VALUES (?, ?, ?, ?)",
            vec![
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
            ],
        )
        .await
        .unwrap();
        // Values that do not fit are refused with the parameter's number.
        let err = db
            .execute("INSERT INTO ty (s) VALUES (?)", vec![int(70_000)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("parameter 1"), "{err}");
        let err = db
            .execute("INSERT INTO ty (u) VALUES (?)", vec![text("not a uuid")])
            .await
            .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("uuid"), "{err}");
        // Types with no mapping ask for a cast.
        let err = db
            .query("SELECT ARRAY[1, 2] AS a", vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("CAST"), "{err}");
        let got = db
            .query(
                "SELECT CAST(ARRAY[1, 2] AS TEXT) AS a, 7.25::numeric AS x",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(got.rows, vec![vec![text("{1,2}"), SqlValue::Real(7.25)]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_types_map_both_ways() {
        run(Engine::postgres(), types).await;
    }

    /// `?schema=` uses an existing schema as is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_url_schema_is_used_as_is() {
        let schema = format!("legacy_{}", unique_namespace());
        let admin = PgSql::connect(&postgres_url(), "admin").await.unwrap();
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.customers (id INT); INSERT INTO {schema}.customers VALUES (7)"
        ))
        .execute(admin.admin_pool())
        .await
        .unwrap();
        let result = tokio::spawn({
            let schema = schema.clone();
            async move {
                let url = format!("{}?schema={schema}", postgres_url());
                let p = PgSql::connect(&url, "scrub").await.unwrap();
                let db = p.open("legacy").unwrap();
                let got = db.query("SELECT id FROM customers", vec![]).await.unwrap();
                assert_eq!(got.rows, vec![vec![int(7)]]);
                assert!(p.drop_database("legacy").await.is_err());
            }
        })
        .await;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(admin.admin_pool())
            .await
            .unwrap();
        result.unwrap();
    }
}

/// MariaDB / MySQL's own types, both ways.
#[cfg(feature = "mysql")]
mod mysql_types {
    use super::*;
    use gust_backends::mysql::MySqlSql;

    async fn types(e: Arc<Engine>) {
        let db = e.provider().await.open("main").unwrap();
        db.execute_script(
            "CREATE TABLE ty (
                 b BOOLEAN, ti TINYINT UNSIGNED, n DECIMAL(10, 2), n0 DECIMAL(20, 0),
                 d DATE, dt DATETIME(6), t TIME, en ENUM('happy', 'sad'),
                 vb VARBINARY(10), f FLOAT, bi BIGINT UNSIGNED)",
        )
        .await
        .unwrap();
        db.execute(
            "INSERT INTO ty VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                int(1),
                int(200),
                SqlValue::Real(1.5),
                int(12),
                text("2026-12-03"),
                text("2026-12-03 08:05:07.5"),
                text("-26:03:04"),
                text("sad"),
                SqlValue::Blob(vec![0, 1, 255]),
                SqlValue::Real(2.0),
                text("18446744073709551615"),
            ],
        )
        .await
        .unwrap();
        let got = db.query("SELECT * FROM ty", vec![]).await.unwrap();
        assert_eq!(
            got.rows,
            vec![vec![
                int(1),
                int(200),
                SqlValue::Real(1.5),
                int(12),
                text("2026-12-03"),
                text("2026-12-03 08:05:07.5"),
                text("-26:03:04"),
                text("sad"),
                SqlValue::Blob(vec![0, 1, 255]),
                SqlValue::Real(2.0),
                SqlValue::Real(u64::MAX as f64),
            ]]
        );
        let got = db
            .query(
                "SELECT COUNT(*) FROM ty WHERE d = ? AND dt > ? AND b = ?",
                vec![text("2026-12-03"), text("2026-12-03"), int(1)],
            )
            .await
            .unwrap();
        assert_eq!(got.rows, vec![vec![int(1)]]);
        // Session settings: "..." is an identifier, a backslash is a character.
        let got = db
            .query("SELECT 'a\\b' AS \"the value\"", vec![])
            .await
            .unwrap();
        assert_eq!(got.columns, ["the value"]);
        assert_eq!(got.rows, vec![vec![text("a\\b")]]);
        let got = db
            .query("SELECT @@max_statement_time", vec![])
            .await
            .unwrap();
        assert_eq!(got.rows, vec![vec![SqlValue::Real(30.0)]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_types_map_both_ways() {
        run(Engine::mysql(), types).await;
    }

    /// A URL naming a database uses it as is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_url_database_is_used_as_is() {
        let database = format!("legacy_{}", unique_namespace());
        let admin = MySqlSql::connect(&mysql_url(), "admin").await.unwrap();
        for sql in [
            format!("CREATE DATABASE {database}"),
            format!("CREATE TABLE {database}.customers (id INT)"),
            format!("INSERT INTO {database}.customers VALUES (7)"),
        ] {
            sqlx::raw_sql(&sql)
                .execute(admin.admin_pool())
                .await
                .unwrap();
        }
        let result = tokio::spawn({
            let database = database.clone();
            async move {
                let url = format!("{}/{database}", mysql_url().trim_end_matches('/'));
                let p = MySqlSql::connect(&url, "scrub").await.unwrap();
                let db = p.open("legacy").unwrap();
                let got = db
                    .query("SELECT id, DATABASE() AS db FROM customers", vec![])
                    .await
                    .unwrap();
                assert_eq!(got.rows, vec![vec![int(7), text(&database)]]);
                assert!(p.drop_database("legacy").await.is_err());
            }
        })
        .await;
        sqlx::raw_sql(&format!("DROP DATABASE {database}"))
            .execute(admin.admin_pool())
            .await
            .unwrap();
        result.unwrap();
    }
}
