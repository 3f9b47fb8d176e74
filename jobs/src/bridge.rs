//! Bridges between async storage streams and the blocking archive code, with
//! bounded channels so that memory stays bounded whatever the object size.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::store::{ByteStream, PutBody};

/// Chunks in flight between a producer thread and the upload.
const PUT_QUEUE: usize = 4;
/// Chunks in flight between a download and its consumer thread.
const GET_QUEUE: usize = 64;

/// A body for [`crate::store::ObjectStore::put`] fed from a blocking thread.
pub fn put_channel() -> (mpsc::Sender<io::Result<Bytes>>, PutBody) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(PUT_QUEUE);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, Box::pin(body))
}

/// A blocking `Read` over a download. The download runs as a task and stops when
/// the reader is dropped.
pub struct StreamReader {
    inner: ChannelReader,
    task: tokio::task::JoinHandle<()>,
}

impl StreamReader {
    /// Must be called inside a tokio runtime; the reader itself must be used on
    /// a blocking thread.
    pub fn spawn(mut stream: ByteStream) -> Self {
        let (tx, rx) = mpsc::channel(GET_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let item: io::Result<Bytes> = item.map_err(io::Error::other);
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        StreamReader {
            inner: ChannelReader::new(rx),
            task,
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// A blocking `Read` of the chunks sent to a channel, in order; the end of
/// the channel is the end of the data, an error item an error. Counts the
/// time spent waiting for chunks.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    waited: std::time::Duration,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
            waited: std::time::Duration::ZERO,
        }
    }

    /// Time spent blocked on the channel so far.
    pub fn waited(&self) -> std::time::Duration {
        self.waited
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let t = std::time::Instant::now();
            let next = self.rx.blocking_recv();
            self.waited += t.elapsed();
            match next {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
