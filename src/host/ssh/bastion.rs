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
        loop {
            let mut moved = false;
            if down.is_empty() && !remote_eof {
                match ch.read(&mut buf) {
                    Ok(0) if ch.eof() => remote_eof = true,
                    Ok(0) => {}
                    Ok(n) => {
                        down.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => remote_eof = true,
                }
            }
            if !down.is_empty() {
                match local.write(&down) {
                    Ok(n) => {
                        down.drain(..n);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            } else if remote_eof {
                break; // the target closed the connection
            }
            if up.is_empty() && !local_eof {
                match local.read(&mut buf) {
                    Ok(0) => local_eof = true,
                    Ok(n) => {
                        up.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => local_eof = true,
                }
            }
            if !up.is_empty() {
                match ch.write(&up) {
                    Ok(n) => {
                        up.drain(..n);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            } else if local_eof {
                break; // our session is gone
            }
            if !moved {
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
