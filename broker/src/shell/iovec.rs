//! A batch of frames written with one `writev`: the shared `Bytes` of a publish go to the
//! kernel as they are, without being copied into a per-socket buffer.

use bytes::Bytes;
use monoio::buf::IoVecBuf;

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

    /// Total bytes.
    pub fn byte_len(&self) -> usize {
        self.iovecs.iter().map(|v| v.iov_len).sum()
    }
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
