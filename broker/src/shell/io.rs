//! Socket I/O shared by the broker and the load generator: a batch of frames written with one
//! `writev` (the shared `Bytes` of a publish go to the kernel as they are, without being copied
//! into a per-socket buffer), and append-reads into a growing buffer.

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, IoVecBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

/// Frames and the iovec array pointing into them.
#[derive(Default)]
pub struct FrameBatch {
    frames: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

impl FrameBatch {
    /// Takes the frames out of `frames` (keeping both vectors' allocations).
    pub fn fill(&mut self, frames: &mut Vec<Bytes>) {
        self.clear();
        self.frames.append(frames);
        self.iovecs.extend(self.frames.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        }));
    }

    /// Drops the frames.
    pub fn clear(&mut self) {
        self.iovecs.clear();
        self.frames.clear();
    }

    /// Bytes not yet written.
    pub fn byte_len(&self) -> usize {
        self.iovecs.iter().map(|v| v.iov_len).sum()
    }

    /// Marks `written` bytes as sent after a partial `writev`: whole iovecs are dropped from
    /// the front and the next one is shortened, so the retry needs no new allocation.
    pub fn advance(&mut self, mut written: usize) {
        let done = self
            .iovecs
            .iter()
            .take_while(|v| {
                let whole = v.iov_len <= written;
                if whole {
                    written -= v.iov_len;
                }
                whole
            })
            .count();
        self.iovecs.drain(..done);
        if let Some(first) = self.iovecs.first_mut() {
            // `written` is now less than this iovec's length.
            first.iov_base = first.iov_base.wrapping_byte_add(written);
            first.iov_len -= written;
        }
    }
}

/// Writes a whole batch with `writev`, resuming after partial writes without allocating
/// (monoio's `write_vectored_all` copies the iovec array on every call). The batch comes back
/// either way, so its vectors can be reused.
pub async fn write_batch<W: AsyncWriteRent>(
    writer: &mut W,
    mut batch: FrameBatch,
) -> (std::io::Result<()>, FrameBatch) {
    while batch.byte_len() > 0 {
        let (result, returned) = writer.writev(batch).await;
        batch = returned;
        match result {
            Ok(0) => return (Err(std::io::ErrorKind::WriteZero.into()), batch),
            Ok(n) => batch.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), batch),
        }
    }
    (Ok(()), batch)
}

/// Appends what the socket has to `buf`; when less than `min_spare` bytes are free, the
/// buffer first grows (at least doubling). Returns the bytes read, 0 at end-of-stream.
pub async fn read_more<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut BytesMut,
    min_spare: usize,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(buf.capacity().max(min_spare * 2));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (result, slice) = reader.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    result
}

// SAFETY: `iovecs` points into the heap buffers of `frames`, which the batch owns and does not
// change while the runtime holds it; moving the batch moves neither allocation, so the
// pointers stay valid for as long as the batch lives.
unsafe impl IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_drops_written_frames_and_shortens_the_next() {
        let mut batch = FrameBatch::default();
        let mut frames = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ];
        batch.fill(&mut frames);
        assert_eq!(batch.byte_len(), 8);
        batch.advance(5);
        assert_eq!(batch.byte_len(), 3);
        assert_eq!(batch.iovecs.len(), 2);
        // SAFETY: the iovec points into the batch's own live frame.
        let rest = unsafe {
            std::slice::from_raw_parts(
                batch.iovecs[0].iov_base as *const u8,
                batch.iovecs[0].iov_len,
            )
        };
        assert_eq!(rest, b"fg");
        batch.advance(3);
        assert_eq!(batch.byte_len(), 0);
    }
}
