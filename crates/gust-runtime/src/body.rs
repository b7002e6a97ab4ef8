//! Bodies nobody wants: read to the end and thrown away, so that the
//! sender's writes succeed and it hears the answer (a 413, a refused
//! outbound request) instead of a reset or a failed write.

use http_body_util::BodyExt;

/// Most bytes of one body read and thrown away.
pub const DRAIN_LIMIT: u64 = 16 << 20;

/// Reads and discards `body` until it ends, errs, or [`DRAIN_LIMIT`] bytes
/// have gone by.
pub async fn drain<B: hyper::body::Body>(body: B) {
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    while seen < DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                seen += frame
                    .data_ref()
                    .map_or(0, |d| bytes::Buf::remaining(d) as u64);
            }
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    use super::*;

    /// A body that never ends: 1 MiB frames, counted.
    #[derive(Default)]
    struct Endless {
        frames: u64,
    }

    impl hyper::body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.frames += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; 1 << 20])))))
        }
    }

    #[tokio::test]
    async fn drain_stops_at_the_limit() {
        let mut body = Endless::default();
        drain(&mut body).await;
        assert_eq!(body.frames, DRAIN_LIMIT >> 20);
    }

    #[tokio::test]
    async fn drain_reads_a_short_body_to_its_end() {
        drain(http_body_util::Full::new(Bytes::from_static(b"hello"))).await;
    }
}
