//! The bastion pump: bytes between a direct-tcpip channel on the bastion and a local socket
//! pair whose other end carries the target's own SSH session.

use super::*;

/// Copy bytes between a bastion channel and one end of a local socket pair until either side
/// closes. Owns the bastion connection.
pub(super) fn bridge(jump: SshHost, mut ch: Channel, local: UnixStream) -> io::Result<JoinHandle<()>> {
    local.set_nonblocking(true)?;
    std::thread::Builder::new().name(format!("kbin-bastion-{}", jump.name)).spawn(move || {
        let mut local = local;
        let mut down: Vec<u8> = Vec::new(); // bastion -> local
        let mut up: Vec<u8> = Vec::new(); // local -> bastion
        let mut buf = vec![0u8; 64 * 1024];
        let (mut remote_eof, mut local_eof) = (false, false);
        // bastion -> local, then local -> bastion; a read of 0 bytes on the channel is the end
        // only when libssh2 says so
        while let Some(down_moved) = step(&mut down, &mut buf, &mut remote_eof, |b| ch.read(b).map(|n| (n > 0 || !ch.eof()).then_some(n)), |d| local.write(d)) {
            let Some(up_moved) = step(&mut up, &mut buf, &mut local_eof, |b| local.read(b).map(|n| (n > 0).then_some(n)), |d| ch.write(d)) else { break };
            if !(down_moved || up_moved) {
                let _ = jump.sess.keepalive_send();
                let mut fds = [
                    libc::pollfd { fd: jump.fd, events: directions(&jump.sess), revents: 0 },
                    libc::pollfd { fd: local.as_raw_fd(), events: libc::POLLIN | if down.is_empty() { 0 } else { libc::POLLOUT }, revents: 0 },
                ];
                unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_SLICE.as_millis() as i32) };
            }
        }
        let _ = ch.close();
        drop(ch);
        drop(jump);
    })
}

/// One direction of the pump: read into `pending` when it is empty and the source is open
/// (`None` from `read`: the source ended), write out what is pending. Whether bytes moved;
/// `None` when the pump should stop (the destination failed, or the source ended and all was
/// passed on).
fn step(pending: &mut Vec<u8>, buf: &mut [u8], eof: &mut bool, read: impl FnOnce(&mut [u8]) -> io::Result<Option<usize>>, write: impl FnOnce(&[u8]) -> io::Result<usize>) -> Option<bool> {
    let mut moved = false;
    if pending.is_empty() && !*eof {
        match read(buf) {
            Ok(None) => *eof = true,
            Ok(Some(n)) => {
                pending.extend_from_slice(&buf[..n]);
                moved = n > 0;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => *eof = true,
        }
    }
    if pending.is_empty() {
        return (!*eof).then_some(moved);
    }
    match write(pending) {
        Ok(n) => {
            pending.drain(..n);
            Some(true)
        }
        Err(e) if would_block(&e) => Some(moved),
        Err(_) => None,
    }
}
