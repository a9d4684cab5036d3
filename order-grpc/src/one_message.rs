//! One request message per call. Every method of this server takes exactly one request message
//! (unary calls, and `SubscribeEvents` and `Health/Watch`, whose replies stream), but tonic
//! reads the first message of a body and drops any that follow it unread. A client that sent
//! two commands in one call would then get an OK for the first and never hear that the second
//! was dropped. This layer counts the messages of such a call's body as they arrive: a byte
//! after the first message fails the body with INVALID_ARGUMENT on `request`. tonic reads the
//! whole body before it runs the handler, so nothing runs and nothing is written.
//!
//! Reflection (`grpc.reflection.*`) streams its requests and is left alone.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// The services whose methods take one request message each.
const ONE_MESSAGE_SERVICES: [&str; 3] = [
    "/orders.v1.OrderService/",
    "/orders.v1.OrderQueryService/",
    "/grpc.health.v1.Health/",
];

/// Wraps request bodies in [`OneMessage`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OneMessageLayer;

impl<S> Layer<S> for OneMessageLayer {
    type Service = OneMessageService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OneMessageService { inner }
    }
}

/// See [`OneMessageLayer`].
#[derive(Debug, Clone)]
pub struct OneMessageService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for OneMessageService<S>
where
    S: Service<Request<OneMessage<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let checked = ONE_MESSAGE_SERVICES.iter().any(|s| path.starts_with(s));
        self.inner
            .call(request.map(|body| OneMessage::new(body, checked)))
    }
}

/// A request body that fails once a byte follows its first gRPC message (when `checked`).
#[derive(Debug)]
pub struct OneMessage<B> {
    inner: B,
    frames: Framing,
}

impl<B> OneMessage<B> {
    fn new(inner: B, checked: bool) -> Self {
        Self {
            inner,
            frames: Framing {
                checked,
                ..Framing::default()
            },
        }
    }
}

/// Where the body is in its length-prefixed messages: 1 byte of flags, 4 of length (big
/// endian), then the message.
#[derive(Debug, Default)]
struct Framing {
    checked: bool,
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the first message still to come, once its prefix is complete.
    remaining: u64,
    first_done: bool,
}

impl Framing {
    /// Follows `data`; false when it holds a byte past the first message.
    fn follow(&mut self, mut data: &[u8]) -> bool {
        if !self.checked {
            return true;
        }
        while !data.is_empty() {
            if self.first_done {
                return false;
            }
            if self.prefix_len < self.prefix.len() {
                let n = (self.prefix.len() - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                data = &data[n..];
                if self.prefix_len == self.prefix.len() {
                    let len = [
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ];
                    self.remaining = u64::from(u32::from_be_bytes(len));
                    self.first_done = self.remaining == 0;
                }
                continue;
            }
            // usize -> u64 never truncates on the platforms Rust supports
            let n = self.remaining.min(data.len() as u64);
            data = &data[n as usize..];
            self.remaining -= n;
            self.first_done = self.remaining == 0;
        }
        true
    }
}

impl<B> Body for OneMessage<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && !this.frames.follow(data.chunk())
                {
                    let status = crate::gateway::bad_request(
                        "the request body holds more than one message",
                        "request",
                        "more than one message: a call to this method sends exactly one",
                    );
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing() -> Framing {
        Framing {
            checked: true,
            ..Framing::default()
        }
    }

    #[test]
    fn one_message_in_any_cut_passes_and_a_byte_after_it_does_not() {
        let one = [0u8, 0, 0, 0, 3, 7, 8, 9];
        for cut in 0..=one.len() {
            let mut f = framing();
            assert!(f.follow(&one[..cut]), "cut at {cut}");
            assert!(f.follow(&one[cut..]), "cut at {cut}");
            assert!(!f.follow(&[0]), "a byte after the message, cut at {cut}");
        }
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        assert!(!framing().follow(&two));
        // an empty message, then another
        assert!(framing().follow(&[0, 0, 0, 0, 0]));
        assert!(!framing().follow(&[0, 0, 0, 0, 0, 0]));
        // a message announced longer than what came: not this layer's to judge
        assert!(framing().follow(&[0, 0, 0, 1, 0, 1, 2]));
    }

    #[test]
    fn unchecked_bodies_pass_whatever_they_hold() {
        let mut f = Framing::default();
        assert!(f.follow(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }
}
