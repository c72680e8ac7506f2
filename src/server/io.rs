//! The socket calls the runtime makes itself: a non-blocking `recv` into a borrowed buffer and
//! a non-blocking vectored `sendmsg`.
//!
//! Why not monoio's owned-buffer reads: an io_uring read in flight owns its buffer, so every
//! idle connection would pin one. Instead a connection waits for readiness (an io_uring
//! `POLL_ADD`, or epoll) and then reads into its worker's shared buffer. See docs/architecture.md.

use std::{io, io::IoSlice, os::fd::RawFd};

use nix::{
    errno::Errno,
    sys::socket::{self, MsgFlags, Shutdown},
};

/// Read what the socket has into `buf` without blocking. `Ok(0)` is end of stream;
/// `WouldBlock` means nothing is there now.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match socket::recv(fd, buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Write the slices in one `sendmsg` without blocking; returns the bytes the kernel took.
pub(crate) fn send_vectored(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        match socket::sendmsg::<()>(
            fd,
            slices,
            &[],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Shut down one or both directions; wakes any task waiting on the socket.
pub(crate) fn shutdown(fd: RawFd, how: Shutdown) {
    // ENOTCONN when the peer already went away: nothing left to do.
    let _ = socket::shutdown(fd, how);
}
