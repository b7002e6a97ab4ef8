//! Shared by the suites that use S3: the test server (moto, started by
//! `scripts/setup.sh --services`) at 127.0.0.1:9000, and a bucket of its own
//! per test, emptied and deleted afterwards.

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The test server's address.
pub const ADDR: &str = "127.0.0.1:9000";

/// Sends one unsigned request with an empty body (moto does not check
/// signatures) and returns the status line.
async fn request(method: &str, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(ADDR)
        .await
        .expect("an S3 server must run at 127.0.0.1:9000 (scripts/setup.sh --services)");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {ADDR}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

/// A bucket made for one test.
pub struct Bucket(pub String);

impl Bucket {
    /// Creates a bucket with a unique name.
    pub async fn create() -> Self {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("gust-test-{hex}");
        let status = request("PUT", &format!("/{name}")).await;
        assert!(status.contains(" 200"), "creating bucket {name}: {status}");
        Self(name)
    }

    /// The `s3://` URL of the bucket on the test server.
    pub fn url(&self) -> String {
        format!(
            "s3://{}?endpoint=http://{ADDR}&region=us-east-1&access_key_id=test&secret_access_key=test",
            self.0
        )
    }

    /// Deletes every object, then the bucket.
    pub async fn delete(&self) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = AmazonS3Builder::new()
            .with_bucket_name(&self.0)
            .with_endpoint(format!("http://{ADDR}"))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
        for object in objects {
            object_store::ObjectStoreExt::delete(&store, &object.location)
                .await
                .unwrap();
        }
        let status = request("DELETE", &format!("/{}", self.0)).await;
        assert!(
            status.contains(" 204"),
            "deleting bucket {}: {status}",
            self.0
        );
    }
}
