//! Text descriptions of tar archives, so the seed corpora stay small text files and the fuzzer
//! can mutate an archive's structure (names, types, link targets) as well as its raw bytes.
//!
//! An input starting with `manifest\n` is one entry per line:
//! `<type> <path> [<data>]`, type `f` (regular file, data is its content with `\n` escapes),
//! `d` (directory), `l` (symlink to data), `h` (hard link to data), `c` (character device),
//! `p` (fifo). Anything else is used as raw tar bytes.

pub fn tar_bytes(data: &[u8]) -> Vec<u8> {
    let Some(text) = data.strip_prefix(b"manifest\n") else { return data.to_vec() };
    let text = String::from_utf8_lossy(text);
    let mut b = tar::Builder::new(Vec::new());
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(path)) = (parts.next(), parts.next()) else { continue };
        let rest = parts.next().unwrap_or("").replace("\\n", "\n");
        let kind = match kind {
            "f" => tar::EntryType::Regular,
            "d" => tar::EntryType::Directory,
            "l" => tar::EntryType::Symlink,
            "h" => tar::EntryType::Link,
            "c" => tar::EntryType::Char,
            "p" => tar::EntryType::Fifo,
            _ => continue,
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        // raw names: the tar crate's own setters refuse '..' and absolute paths, an attacker's
        // archive does not
        let name = path.as_bytes();
        let n = name.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            let t = rest.as_bytes();
            let n = t.len().min(99);
            h.as_old_mut().linkname[..n].copy_from_slice(&t[..n]);
            h.set_size(0);
            h.set_cksum();
            let _ = b.append(&h, &[][..]);
        } else {
            h.set_size(rest.len() as u64);
            h.set_cksum();
            let _ = b.append(&h, rest.as_bytes());
        }
    }
    b.into_inner().unwrap_or_default()
}
