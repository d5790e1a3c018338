//! Tunnels: a direct-tcpip channel as a blocking `Read + Write` (TLS to etcd or an apiserver
//! through the SSH connection).

use super::*;

/// A channel whose every use, its end included, takes the connection's lock.
pub(super) struct Held {
    pub(super) ch: Option<Channel>,
    pub(super) lock: Arc<Mutex<()>>,
}

impl Held {
    pub(super) fn new(ch: Channel, lock: &Arc<Mutex<()>>) -> Held {
        Held { ch: Some(ch), lock: lock.clone() }
    }
}

impl std::ops::Deref for Held {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        self.ch.as_ref().expect("channel present until drop")
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Channel {
        self.ch.as_mut().expect("channel present until drop")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _g = lock(&self.lock);
        drop(self.ch.take());
    }
}

/// A direct-tcpip channel as a blocking `Read + Write` (the session itself is non-blocking).
pub(super) struct TunnelStream {
    pub(super) ch: Held,
    pub(super) sess: Session,
    pub(super) fd: RawFd,
    pub(super) io_timeout: Duration,
}

impl TunnelStream {
    pub(super) fn wait(&self, until: Instant) -> io::Result<()> {
        if Instant::now() >= until {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "tunnel timed out"));
        }
        let _ = locked_call(&self.sess, self.fd, &self.ch.lock, self.io_timeout, is_eagain, &mut || self.sess.keepalive_send());
        poll_socket(&self.sess, self.fd, until);
        Ok(())
    }
    pub(super) fn io<T>(&mut self, mut f: impl FnMut(&mut Channel) -> io::Result<T>) -> io::Result<T> {
        let lock = self.ch.lock.clone();
        let ch = &mut *self.ch;
        locked_call(&self.sess, self.fd, &lock, self.io_timeout, would_block, &mut || f(ch))
    }
}

impl Read for TunnelStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let until = Instant::now() + self.io_timeout;
        loop {
            match self.io(|ch| ch.read(buf)) {
                Ok(0) if !self.io(|ch| Ok(ch.eof()))? && !buf.is_empty() => self.wait(until)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(until)?,
                r => return r,
            }
        }
    }
}

impl Write for TunnelStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let until = Instant::now() + self.io_timeout;
        loop {
            match self.io(|ch| ch.write(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(until)?,
                r => return r,
            }
        }
    }
    /// Nothing to do: `write` hands every byte to libssh2, which sends it. Never call the
    /// channel's own `flush`: `libssh2_channel_flush` *discards* the data received but not yet
    /// read, so a TLS client flushing its request lost the start of the answer now and then
    /// ("cannot decrypt peer's message").
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        let m = self.ch.lock.clone();
        let _g = lock(&m);
        let _ = self.ch.send_eof();
        let _ = self.ch.close();
    }
}
