//! End-to-end: `gust up examples/hello` as a newcomer runs it.

mod common;

use common::*;

#[test]
fn hello_greets_and_counts_calls() {
    let dir = repo().join("examples/hello");
    let host = up(&dir, &["--quiet", "--no-watch"]);
    let first = get(&format!("{}/hello?name=Ada", host.url), &[]);
    assert_eq!(first.status, 200, "{first:?}");
    let (greeting, count) = first.body.split_once(" (call #").expect("a call count");
    assert_eq!(greeting, "hello, Ada!");
    let n: u64 = count.trim_end_matches(')').parse().unwrap();
    let second = get(&format!("{}/hello", host.url), &[]);
    assert_eq!(second.body, format!("hello, world! (call #{})", n + 1));
}
