//! Benchmark behind the choice of embedded engines: durable writes and
//! point reads on redb (kv, queues, streams, tables) vs SQLite via rusqlite
//! (the `sql` binding), the two engines linked into Gust, in one run.
//!
//! * single: one 200-byte record per durable commit (a producer waiting
//!   for its own ack);
//! * grouped: 100 records per durable commit (what group commit achieves);
//! * reads: random point reads of the records written.
//!
//! Run with `bench/engines.sh` (release build). Usage:
//! `engine_compare [single-writes] [grouped-writes]`.

use std::time::Instant;

use redb::{Database, ReadableDatabase, TableDefinition};
use rusqlite::Connection;

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn rate(n: usize, started: Instant) -> String {
    format!("{:>9.0}/s", n as f64 / started.elapsed().as_secs_f64())
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{i:08}").into_bytes();
    v.resize(200, b'x');
    v
}

/// A cheap deterministic shuffle of `0..n` for the read phase.
fn order(n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i * 7_919) % n)
}

fn redb(dir: &std::path::Path, single: usize, grouped: usize) -> [String; 3] {
    let db = Database::create(dir.join("bench.redb")).unwrap();
    let t = Instant::now();
    for i in 0..single {
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert(i as u64, value(i).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let a = rate(single, t);
    let t = Instant::now();
    for chunk in (single..single + grouped).collect::<Vec<_>>().chunks(100) {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            for &i in chunk {
                table.insert(i as u64, value(i).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let b = rate(grouped, t);
    let total = single + grouped;
    let t = Instant::now();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    for i in order(total) {
        assert!(table.get(i as u64).unwrap().is_some());
    }
    [a, b, rate(total, t)]
}

fn sqlite(dir: &std::path::Path, sync: &str, single: usize, grouped: usize) -> [String; 3] {
    let mut conn = Connection::open(dir.join(format!("bench-{sync}.sqlite"))).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"
    ))
    .unwrap();
    let t = Instant::now();
    for i in 0..single {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![i as i64, value(i)],
        )
        .unwrap();
    }
    let a = rate(single, t);
    let t = Instant::now();
    for chunk in (single..single + grouped).collect::<Vec<_>>().chunks(100) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare("INSERT INTO t VALUES (?1, ?2)").unwrap();
            for &i in chunk {
                stmt.execute(rusqlite::params![i as i64, value(i)]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let b = rate(grouped, t);
    let total = single + grouped;
    let t = Instant::now();
    let mut stmt = conn.prepare("SELECT v FROM t WHERE k = ?1").unwrap();
    for i in order(total) {
        let v: Vec<u8> = stmt.query_row([i as i64], |r| r.get(0)).unwrap();
        assert_eq!(v.len(), 200);
    }
    [a, b, rate(total, t)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let single: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let grouped: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{single} single-record commits, {grouped} records in commits of 100, then point reads"
    );
    println!(
        "{:<34} {:>11} {:>11} {:>11}",
        "engine", "single", "grouped", "reads"
    );
    let rows = [
        ("redb 4 (durable commit)", redb(dir.path(), single, grouped)),
        (
            "SQLite WAL, synchronous=FULL",
            sqlite(dir.path(), "FULL", single, grouped),
        ),
        (
            "SQLite WAL, synchronous=NORMAL",
            sqlite(dir.path(), "NORMAL", single, grouped),
        ),
    ];
    for (name, [a, b, c]) in rows {
        println!("{name:<34} {a:>11} {b:>11} {c:>11}");
    }
    println!("(SQLite NORMAL in WAL mode may lose the last commits on power loss; Gust uses FULL)");
}
