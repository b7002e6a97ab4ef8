//! Native baseline: answers like the `raw-wasip2` hello component
//! (`raw wasip2: <path-with-query>`, text/plain).

use axum::Router;
use axum::http::{Uri, header};
use axum::response::IntoResponse;

async fn hello(uri: Uri) -> impl IntoResponse {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    ([(header::CONTENT_TYPE, "text/plain")], format!("raw wasip2: {path}"))
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let app = Router::new().fallback(hello);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
