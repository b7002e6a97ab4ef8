//! One conformance suite for every [`BlobProvider`]: each case is an async fn
//! over a [`Backend`], which opens providers on one storage location (as
//! often as a case asks, and under any namespace). It runs against the
//! embedded backend, (feature `s3`) against the S3 test server at
//! 127.0.0.1:9000 in a bucket of its own per case, and (feature `nats`)
//! against the NATS server at 127.0.0.1:4222 under a unique prefix whose
//! buckets are deleted afterwards.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gust_backends::{BackendError, BlobContainer, BlobInfo, BlobProvider};

/// Opens providers over one storage location.
trait Backend {
    /// A provider for `namespace` (an app); the same namespace sees the
    /// same blobs, another namespace none of them.
    async fn open(&self, namespace: &str) -> Arc<dyn BlobProvider>;
    /// Whether `wait_for_change` is woken by changes (else it polls).
    fn watches(&self) -> bool;
}

struct Embedded(tempfile::TempDir);

impl Embedded {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Backend for Embedded {
    async fn open(&self, namespace: &str) -> Arc<dyn BlobProvider> {
        // An app's containers are folders in its own `.gust/blobs/`.
        let root = self.0.path().join(namespace).join(".gust/blobs");
        Arc::new(gust_backends::embedded::EmbeddedBlobs::new(&root))
    }
    fn watches(&self) -> bool {
        true
    }
}

#[cfg(feature = "s3")]
mod s3_support;

#[cfg(feature = "s3")]
struct S3(s3_support::Bucket);

#[cfg(feature = "s3")]
impl Backend for S3 {
    async fn open(&self, namespace: &str) -> Arc<dyn BlobProvider> {
        Arc::new(
            gust_backends::s3::S3Blobs::connect(&self.0.url(), namespace)
                .await
                .unwrap(),
        )
    }
    fn watches(&self) -> bool {
        false
    }
}

#[cfg(feature = "nats")]
const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A unique namespace prefix on the NATS server.
#[cfg(feature = "nats")]
struct Nats(String);

#[cfg(feature = "nats")]
impl Nats {
    fn new() -> Self {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("t{hex}"))
    }

    /// Deletes every bucket (object store stream) of this test.
    async fn clean_up(&self) {
        use futures::TryStreamExt;
        let client = async_nats::connect(NATS_URL).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let start = format!("OBJ_{}", self.0.to_uppercase());
        let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
        for name in names.into_iter().filter(|n| n.starts_with(&start)) {
            js.delete_stream(&name).await.unwrap();
        }
    }
}

#[cfg(feature = "nats")]
impl Backend for Nats {
    async fn open(&self, namespace: &str) -> Arc<dyn BlobProvider> {
        let namespace = format!("{}{namespace}", self.0);
        Arc::new(
            gust_backends::nats::blob::NatsBlobs::connect(NATS_URL, &namespace)
                .await
                .expect("NATS with JetStream must run at 127.0.0.1:4222"),
        )
    }
    fn watches(&self) -> bool {
        true
    }
}

const APP: &str = "app";
const LONG: Duration = Duration::from_secs(30);

async fn container<B: Backend>(b: &B, name: &str) -> Arc<dyn BlobContainer> {
    b.open(APP).await.container(name).unwrap()
}

async fn put(c: &dyn BlobContainer, name: &str, data: &str) {
    c.put(name, data.as_bytes().to_vec()).await.unwrap();
}

async fn text(c: &dyn BlobContainer, name: &str) -> Option<String> {
    c.get(name)
        .await
        .unwrap()
        .map(|d| String::from_utf8(d).unwrap())
}

/// Every blob under `prefix`, paging `page` at a time.
async fn all_versions(c: &dyn BlobContainer, prefix: &str, page: usize) -> Vec<BlobInfo> {
    let mut out: Vec<BlobInfo> = Vec::new();
    loop {
        let after = out.last().map(|i| i.name.clone());
        let got = c
            .list_versions(prefix, after.as_deref(), page)
            .await
            .unwrap();
        assert!(got.len() <= page);
        let done = got.len() < page;
        out.extend(got);
        if done {
            return out;
        }
    }
}

fn names(infos: &[BlobInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.name.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Cases

async fn put_get_delete_list<B: Backend>(b: &B) {
    let c = container(b, "reports").await;
    put(&*c, "2026/a.csv", "a").await;
    put(&*c, "2026/b.csv", "b").await;
    put(&*c, "2026/sub/c.csv", "c").await;
    put(&*c, "2026b.csv", "x").await;
    put(&*c, "top.txt", "t").await;
    assert_eq!(text(&*c, "2026/a.csv").await.as_deref(), Some("a"));
    assert_eq!(text(&*c, "missing").await, None);
    assert_eq!(text(&*c, "2026").await, None, "a folder is not a blob");
    assert_eq!(
        c.list("", 100).await.unwrap(),
        [
            "2026/a.csv",
            "2026/b.csv",
            "2026/sub/c.csv",
            "2026b.csv",
            "top.txt"
        ]
    );
    assert_eq!(
        c.list("2026/", 100).await.unwrap(),
        ["2026/a.csv", "2026/b.csv", "2026/sub/c.csv"]
    );
    assert_eq!(
        c.list("2026", 100).await.unwrap(),
        ["2026/a.csv", "2026/b.csv", "2026/sub/c.csv", "2026b.csv"],
        "a prefix is text, not a folder"
    );
    assert_eq!(c.list("2026/b", 100).await.unwrap(), ["2026/b.csv"]);
    assert_eq!(
        c.list("2026/", 2).await.unwrap(),
        ["2026/a.csv", "2026/b.csv"]
    );
    assert!(c.list("", 0).await.unwrap().is_empty());
    assert!(c.list("nothing/", 10).await.unwrap().is_empty());
    let (info, data) = c.get_with_info("top.txt").await.unwrap().unwrap();
    assert_eq!(data, b"t");
    assert_eq!((info.name.as_str(), info.size), ("top.txt", 1));
    assert!(c.get_with_info("missing").await.unwrap().is_none());

    assert!(c.delete("top.txt").await.unwrap());
    assert!(!c.delete("top.txt").await.unwrap());
    assert!(!c.delete("never").await.unwrap());
    assert_eq!(text(&*c, "top.txt").await, None);
    assert!(c.list("top", 10).await.unwrap().is_empty());
    assert!(c.list_versions("top", None, 10).await.unwrap().is_empty());
    // An empty blob is a blob.
    put(&*c, "empty", "").await;
    assert_eq!(text(&*c, "empty").await.as_deref(), Some(""));
}

async fn overwrite_gives_a_new_version<B: Backend>(b: &B) {
    let c = container(b, "docs").await;
    put(&*c, "a.txt", "first").await;
    let v1 = c.list_versions("a.txt", None, 10).await.unwrap();
    assert_eq!(v1.len(), 1);
    assert_eq!((v1[0].name.as_str(), v1[0].size), ("a.txt", 5));
    // Listing again does not change the version.
    assert_eq!(
        c.list_versions("", None, 10).await.unwrap()[0].version,
        v1[0].version
    );
    put(&*c, "a.txt", "second!").await;
    let v2 = c.list_versions("a.txt", None, 10).await.unwrap();
    assert_eq!(v2.len(), 1);
    assert_eq!(v2[0].size, 7);
    assert_ne!(v2[0].version, v1[0].version);
    let (read, data) = c.get_with_info("a.txt").await.unwrap().unwrap();
    assert_eq!(data, b"second!");
    assert_eq!(
        read.version, v2[0].version,
        "the version read is the one listed"
    );
    assert_eq!(read.size, 7);
    // Same size, other bytes: still a new version.
    put(&*c, "a.txt", "third!!").await;
    let v3 = c.list_versions("a.txt", None, 10).await.unwrap();
    assert_ne!(v3[0].version, v2[0].version);
    assert!(v3[0].modified.is_some());
}

async fn versions_listed_for_every_blob<B: Backend>(b: &B) {
    let c = container(b, "many").await;
    let mut expected = BTreeSet::new();
    for i in 0..23 {
        let name = if i % 3 == 0 {
            format!("x/{i:02}.bin")
        } else {
            format!("y/{i:02}.bin")
        };
        c.put(&name, vec![b'z'; i]).await.unwrap();
        expected.insert(name);
    }
    let every = all_versions(&*c, "", 5).await;
    assert_eq!(
        names(&every),
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "every blob once, in name order"
    );
    for info in &every {
        let i: u64 = info.name[2..4].parse().unwrap();
        assert_eq!(info.size, i);
        assert!(!info.version.is_empty());
    }
    let versions: BTreeSet<_> = every.iter().map(|i| &i.version).collect();
    assert!(versions.len() > 1, "versions differ between blobs");
    let x = all_versions(&*c, "x/", 3).await;
    assert_eq!(x.len(), 8);
    assert!(x.iter().all(|i| i.name.starts_with("x/")));
    // `after` skips up to and including that name, within the prefix.
    let after = c.list_versions("y/", Some("y/10.bin"), 100).await.unwrap();
    assert_eq!(
        names(&after),
        [
            "y/11.bin", "y/13.bin", "y/14.bin", "y/16.bin", "y/17.bin", "y/19.bin", "y/20.bin",
            "y/22.bin"
        ]
    );
    // `after` before the prefix's range starts at its beginning.
    let from_start = c.list_versions("y/", Some("a"), 2).await.unwrap();
    assert_eq!(names(&from_start), ["y/01.bin", "y/02.bin"]);
    assert!(c.list_versions("", Some("z"), 10).await.unwrap().is_empty());
}

async fn names_refused_the_same_way<B: Backend>(b: &B) {
    let provider = b.open(APP).await;
    let c = provider.container("names").unwrap();
    let bad = [
        "",
        "/abs",
        "../x",
        "a/../../x",
        "a//b",
        "a/",
        "a\\b",
        "./a",
        "a\tb",
        "a\nb",
    ];
    let refused = |r: Result<(), BackendError>, name: &str, op: &str| {
        assert!(
            matches!(r, Err(BackendError::InvalidValue { .. })),
            "{op} `{}`: {r:?}",
            name.escape_debug()
        );
    };
    for name in bad {
        refused(c.put(name, b"x".to_vec()).await, name, "put");
        refused(c.get(name).await.map(|_| ()), name, "get");
        refused(
            c.get_with_info(name).await.map(|_| ()),
            name,
            "get_with_info",
        );
        refused(c.delete(name).await.map(|_| ()), name, "delete");
    }
    let long = "a".repeat(1025);
    refused(c.put(&long, vec![]).await, "1025 bytes", "put");
    for name in ["", "a/b", "..", "a\\b"] {
        assert!(
            matches!(
                provider.container(name).map(|_| ()),
                Err(BackendError::InvalidValue { .. })
            ),
            "container `{name}`"
        );
    }
    // Odd but valid names round-trip.
    for name in [
        "a b/c d.txt",
        "ünï/cödé",
        "with%20percent",
        "q?x=1&y#z",
        "x.tmp~",
    ] {
        put(&*c, name, name).await;
        assert_eq!(text(&*c, name).await.as_deref(), Some(name));
    }
    assert_eq!(c.list("", 100).await.unwrap().len(), 5);
    assert!(c.list("a\tb", 10).await.unwrap().is_empty());
}

async fn large_blob<B: Backend>(b: &B) {
    let c = container(b, "large").await;
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    c.put("big.bin", data.clone()).await.unwrap();
    let got = c.get("big.bin").await.unwrap().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "8 MiB read back unchanged");
    let info = &c.list_versions("big", None, 10).await.unwrap()[0];
    assert_eq!(info.size, 8 << 20);
}

async fn wait_for_change_sees_another_instance<B: Backend>(b: &B) {
    let watched = b.open(APP).await.container("watched").unwrap();
    let writer = b.open(APP).await.container("watched").unwrap();
    if b.watches() {
        // Start the watch and drain whatever it reported so far.
        while watched.wait_for_change(Duration::ZERO).await {}
        let write = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            put(&*writer, "new.txt", "n").await;
        };
        let (changed, ()) = tokio::join!(watched.wait_for_change(LONG), write);
        assert!(changed, "woken by the other instance's put");
        // A change between two calls is not lost.
        put(&*writer, "later.txt", "l").await;
        assert!(watched.wait_for_change(LONG).await);
    } else {
        put(&*writer, "new.txt", "n").await;
        // Polling engines return after the timeout.
        let changed = watched.wait_for_change(Duration::from_millis(50)).await;
        assert!(!changed, "an engine that polls reports no change");
    }
    // Either way the change is visible to the other instance.
    assert_eq!(text(&*watched, "new.txt").await.as_deref(), Some("n"));
}

async fn containers_and_namespaces_isolated<B: Backend>(b: &B) {
    let one = container(b, "one").await;
    let two = container(b, "two").await;
    let other_app = b.open("other").await.container("one").unwrap();
    put(&*one, "x", "1").await;
    put(&*two, "x", "2").await;
    put(&*other_app, "x", "3").await;
    put(&*other_app, "y", "only there").await;
    assert_eq!(text(&*one, "x").await.as_deref(), Some("1"));
    assert_eq!(text(&*two, "x").await.as_deref(), Some("2"));
    assert_eq!(text(&*other_app, "x").await.as_deref(), Some("3"));
    assert_eq!(one.list("", 10).await.unwrap(), ["x"]);
    assert_eq!(text(&*one, "y").await, None);
    assert!(one.delete("x").await.unwrap());
    assert_eq!(text(&*two, "x").await.as_deref(), Some("2"));
    assert_eq!(text(&*other_app, "x").await.as_deref(), Some("3"));
    // A container whose name starts like another's is another container.
    let prefixed = container(b, "one-more").await;
    assert!(prefixed.list("", 10).await.unwrap().is_empty());
    put(&*prefixed, "z", "z").await;
    assert!(one.list("", 10).await.unwrap().is_empty());
}

async fn survives_reopen<B: Backend>(b: &B) {
    let before = {
        let c = container(b, "kept").await;
        put(&*c, "a/1.txt", "one").await;
        put(&*c, "b.txt", "bee").await;
        c.list_versions("", None, 10).await.unwrap()
    };
    let c = container(b, "kept").await;
    assert_eq!(text(&*c, "a/1.txt").await.as_deref(), Some("one"));
    assert_eq!(text(&*c, "b.txt").await.as_deref(), Some("bee"));
    let after = c.list_versions("", None, 10).await.unwrap();
    assert_eq!(names(&after), ["a/1.txt", "b.txt"]);
    let versions = |v: &[BlobInfo]| v.iter().map(|i| i.version.clone()).collect::<Vec<_>>();
    assert_eq!(versions(&after), versions(&before), "versions are stable");
}

// ---------------------------------------------------------------------------
// One test per case per engine.

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Embedded::new()).await;
                }
            )*
        }

        #[cfg(feature = "s3")]
        mod s3 {
            use futures::FutureExt;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::S3(super::s3_support::Bucket::create().await);
                    let result = std::panic::AssertUnwindSafe(super::$case(&b)).catch_unwind().await;
                    b.0.delete().await;
                    if let Err(e) = result {
                        std::panic::resume_unwind(e);
                    }
                }
            )*
        }

        #[cfg(feature = "nats")]
        mod nats {
            use futures::FutureExt;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::Nats::new();
                    let result = std::panic::AssertUnwindSafe(super::$case(&b)).catch_unwind().await;
                    b.clean_up().await;
                    if let Err(e) = result {
                        std::panic::resume_unwind(e);
                    }
                }
            )*
        }
    };
}

conformance!(
    put_get_delete_list,
    overwrite_gives_a_new_version,
    versions_listed_for_every_blob,
    names_refused_the_same_way,
    large_blob,
    wait_for_change_sees_another_instance,
    containers_and_namespaces_isolated,
    survives_reopen,
);
