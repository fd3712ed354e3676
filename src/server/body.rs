//! Response bodies: whole (every endpoint), or streamed in chunks as they
//! are rendered (a `/metrics` larger than one chunk).
//!
//! Why stream: a per-proxy scrape of 100k proxies is ~32 MB. Rendered whole,
//! the scraper waits for all of it before the first byte leaves, then for
//! the transfer; streamed, the transfer runs beside the rendering, and the
//! exporter holds one chunk at a time instead of the whole body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a streamed scrape may take to be handed over, from the start
/// of its rendering to its last chunk. The renderer holds a render slot
/// (and the per-proxy cache) while it waits for the client to take each
/// chunk: a client of the port that stops reading must not hold them for
/// ever, or it would starve every other scrape. 30 s is three times
/// Prometheus' default scrape timeout.
pub(crate) const STREAM_DEADLINE: Duration = Duration::from_secs(30);

/// From a blocking thread: hand `chunk` over unless `deadline` passes
/// first. False when it was not sent (the body is gone, or the client
/// too slow): the renderer then stops sending, and the response ends
/// with an error rather than a short exposition.
pub(crate) fn send_by(
    rt: &Handle,
    tx: &mpsc::Sender<Chunk>,
    chunk: Chunk,
    deadline: Instant,
) -> bool {
    rt.block_on(async {
        matches!(
            tokio::time::timeout_at(deadline, tx.send(chunk)).await,
            Ok(Ok(()))
        )
    })
}

/// What a renderer sends down a [`Body::Stream`].
#[derive(Debug)]
pub(crate) enum Chunk {
    /// More of the body.
    Data(Bytes),
    /// The body is complete. A channel that closes without it (the
    /// renderer panicked) ends the response with an error, so the client
    /// sees a broken transfer rather than a short exposition.
    End,
}

/// A rendered body ended before its [`Chunk::End`].
#[derive(Debug, thiserror::Error)]
#[error("the response body ended before it was complete")]
pub(crate) struct Incomplete;

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    /// All of it at once, with its length.
    Full(Full<Bytes>),
    /// Chunks from a renderer, as they come (after `head`, chunks
    /// already received).
    Stream {
        head: VecDeque<Bytes>,
        rx: mpsc::Receiver<Chunk>,
        done: bool,
    },
}

impl Body {
    /// A body of these bytes.
    pub(crate) fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Full::new(b.into()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Incomplete;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Incomplete>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
            Body::Stream { head, rx, done } => {
                if let Some(b) = head.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                if *done {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Chunk::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(Some(Chunk::End)) => {
                        *done = true;
                        Poll::Ready(None)
                    }
                    Poll::Ready(None) => {
                        *done = true;
                        Poll::Ready(Some(Err(Incomplete)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream { head, done, .. } => *done && head.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Stream { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_send_gives_up_at_its_deadline_when_nobody_reads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("runtime");
        let h = rt.handle().clone();
        let (tx, mut rx) = mpsc::channel(1);
        let soon = rt.block_on(async { Instant::now() + Duration::from_millis(20) });
        assert!(send_by(&h, &tx, Chunk::End, soon), "room for one");
        // Full, and nobody takes it: given up, not blocked for ever.
        assert!(!send_by(&h, &tx, Chunk::End, soon));
        // Read by the body: sent.
        let later = rt.block_on(async { Instant::now() + Duration::from_secs(600) });
        let reader = rt.spawn(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        assert!(send_by(&h, &tx, Chunk::End, later));
        drop(tx);
        assert_eq!(rt.block_on(reader).expect("reader"), 2);
        // The body gone: not sent, at once.
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        assert!(!send_by(&h, &tx, Chunk::End, later));
    }

    #[tokio::test]
    async fn a_stream_is_its_chunks_and_ends_only_at_end() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"ab")))
            .await
            .unwrap();
        tx.send(Chunk::Data(Bytes::from_static(b"c")))
            .await
            .unwrap();
        tx.send(Chunk::End).await.unwrap();
        let body = Body::Stream {
            head: [Bytes::from_static(b"0"), Bytes::from_static(b"1")].into(),
            rx,
            done: false,
        };
        let got = body.collect().await.expect("complete").to_bytes();
        assert_eq!(&got[..], b"01abc");

        // The sender gone before End: an error, not a short body.
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"ab")))
            .await
            .unwrap();
        drop(tx);
        let body = Body::Stream {
            head: VecDeque::new(),
            rx,
            done: false,
        };
        assert!(body.collect().await.is_err());

        let full = Body::full("xyz");
        assert_eq!(full.size_hint().exact(), Some(3));
        assert_eq!(&full.collect().await.unwrap().to_bytes()[..], b"xyz");
    }
}
