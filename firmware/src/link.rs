//! The byte queue between the encoder and the link to the edge box, and the non-blocking
//! pump that drains it.
//!
//! The link (a UART, or USB-CDC) is slower than the encoder in bursts, and a blocking write
//! would stall the ADC reads: so encoded frames go into a ring buffer of `Q` bytes, and the
//! bridge drains it a little at a time whenever it is waiting for the ADC or the trigger,
//! only while the link says it can take bytes without blocking
//! ([`embedded_io::WriteReady`]). Partial writes are the normal case and are handled: the
//! queue keeps whatever the link did not take.

use embedded_io::{Write, WriteReady};

/// A byte ring buffer of `Q` bytes (its whole cost in RAM, plus two indices).
pub struct TxQueue<const Q: usize> {
    buf: [u8; Q],
    /// Index of the oldest byte.
    head: usize,
    /// Bytes queued.
    len: usize,
}

impl<const Q: usize> Default for TxQueue<Q> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const Q: usize> TxQueue<Q> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            buf: [0; Q],
            head: 0,
            len: 0,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn free(&self) -> usize {
        Q - self.len
    }

    /// Queue all of `bytes`, or nothing (`false`) if they do not fit: a frame is never
    /// split by the queue, so the stream only ever loses whole frames.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.free() {
            return false;
        }
        let tail = (self.head + self.len) % Q;
        let first = bytes.len().min(Q - tail);
        self.buf[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
        true
    }

    /// The oldest queued bytes that are contiguous in the ring.
    fn front(&self) -> &[u8] {
        let n = self.len.min(Q - self.head);
        &self.buf[self.head..self.head + n]
    }

    fn consume(&mut self, n: usize) {
        self.head = (self.head + n) % Q;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }

    /// Offer at most `max` bytes to `link` if it is ready; returns how many it took (0 when
    /// it was not ready or the queue is empty). Never blocks on a link that implements
    /// `WriteReady` faithfully.
    pub fn pump<W: Write + WriteReady>(
        &mut self,
        link: &mut W,
        max: usize,
    ) -> Result<usize, W::Error> {
        if self.is_empty() || !link.write_ready()? {
            return Ok(0);
        }
        let front = self.front();
        let n = front.len().min(max);
        let took = link.write(&front[..n])?;
        self.consume(took);
        Ok(took)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A link that takes at most `per_write` bytes per call and is ready every other poll.
    struct Slow {
        out: Vec<u8>,
        per_write: usize,
        tick: u32,
    }
    impl embedded_io::ErrorType for Slow {
        type Error = core::convert::Infallible;
    }
    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.per_write);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    impl WriteReady for Slow {
        fn write_ready(&mut self) -> Result<bool, Self::Error> {
            self.tick += 1;
            Ok(self.tick.is_multiple_of(2))
        }
    }

    #[test]
    fn wraps_and_keeps_order_under_partial_writes() {
        let mut q = TxQueue::<16>::new();
        let mut link = Slow {
            out: Vec::new(),
            per_write: 3,
            tick: 0,
        };
        let mut sent = Vec::new();
        let mut next = 0u8;
        let mut rejected = 0;
        for round in 0..200 {
            let n = (round % 7) + 1;
            let frame: Vec<u8> = (0..n)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            if q.push(&frame) {
                sent.extend_from_slice(&frame);
            } else {
                assert!(frame.len() > q.free());
                rejected += 1;
            }
            q.pump(&mut link, 5).unwrap();
        }
        while !q.is_empty() {
            q.pump(&mut link, 5).unwrap();
        }
        assert_eq!(link.out, sent);
        // The link (1.5 bytes per round) is slower than the producer (4 per round): the
        // ring wrapped many times and whole frames were refused.
        assert!(
            sent.len() > 250 && rejected > 50,
            "{} sent, {rejected} rejected",
            sent.len()
        );
    }

    #[test]
    fn rejects_whole_frames_only() {
        let mut q = TxQueue::<8>::new();
        assert!(q.push(&[1; 6]));
        assert!(!q.push(&[2; 3]));
        assert_eq!(q.len(), 6);
        assert!(q.push(&[3; 2]));
        assert_eq!(q.free(), 0);
    }
}
