//! One host-to-host transfer of the relay: plain OpenSSH between two hosts of the cluster file,
//! authorized for that transfer only (a one-time key, a forced command, the receiver's address)
//! and verified by the receiver before it keeps a byte.

use super::sched::Unit;
use super::{BLOBS_DIR, blob_path};
use crate::host::known_hosts::KnownHosts;
use crate::host::{Cmd, Node, Source, WriteOpts};

/// The receiver's half: a one-time key, then (after the sender authorized it) the fetch.
const KEYGEN: &str = r#"set -eu
umask 077
mkdir -p -- "$1"
rm -f -- "$1/key" "$1/key.pub"
ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1/key"
cat -- "$1/key.pub""#;
/// `$1` work dir, `$2` user@addr, `$3` port, `$4` the store, then `sha256:size` per file: fetch
/// the files (the sender's `cat` of them, one after the other: `head -c` reads no byte past its
/// count), verify each, and only if every one is right move them in.
const FETCH: &str = r#"set -eu
d=$1 target=$2 port=$3 store=$4
shift 4
# a background copy: the lowest CPU priority, so the services on this host and the operator's own
# transfers go first (the session's autogroup too, where the kernel groups by session)
echo 19 > /proc/self/autogroup 2>/dev/null || true
renice -n 19 -p $$ >/dev/null 2>&1 || true
fetch() {
  ssh -i "$d/key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -c aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com \
    -o UserKnownHostsFile="$d/known_hosts" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 \
    -o ServerAliveInterval=5 -o LogLevel=ERROR -p "$port" "$target" 2>"$d/ssh.err" || true
}
if [ $# -eq 1 ]; then
  fetch > "$d/${1%%:*}.part"
else
  fetch | {
    for f in "$@"; do head -c "${f#*:}" > "$d/${f%%:*}.part"; done
    cat > /dev/null
  }
fi
for f in "$@"; do
  sha=${f%%:*}
  got=$(openssl dgst -sha256 -r < "$d/$sha.part" 2>/dev/null) || got=
  got=${got%% *}
  case "$got" in
    ????????????????????????????????????????????????????????????????) ;;
    *) got=$(sha256sum < "$d/$sha.part"); got=${got%% *} ;;
  esac
  if [ "$got" != "$sha" ] && [ -s "$d/ssh.err" ]; then echo "ssh: $(tail -n 1 "$d/ssh.err")" >&2; exit 3; fi
  if [ "$got" != "$sha" ]; then echo "received $(wc -c < "$d/$sha.part") bytes with sha256 $got, not $sha" >&2; exit 3; fi
done
mkdir -p -- "$store"
for f in "$@"; do
  sha=${f%%:*}
  chmod 644 "$d/$sha.part"
  mv -f -- "$d/$sha.part" "$store/$sha"
done"#;
/// The sender's half, as the login user: `$1` add|remove, `$2` the authorized_keys line, `$3` its tag.
const AUTHORIZE: &str = r#"set -eu
umask 077
mkdir -p "$HOME/.ssh"
f="$HOME/.ssh/authorized_keys"
touch "$f"
exec 9>"$HOME/.ssh/.kbin-relay.lock"
flock 9
case $1 in
  add) printf '%s\n' "$2" >> "$f" ;;
  remove)
    t=$(mktemp "$f.kbin-XXXXXX")
    grep -vF -- "$3" "$f" > "$t" || true
    # renamed into place: sshd checking another transfer's key meanwhile reads the old file or
    # the new one, never a truncated one (a symlinked file is rewritten where it points)
    if [ -L "$f" ]; then cat "$t" > "$f"; rm -f "$t"; else mv -f "$t" "$f"; fi ;;
esac"#;

/// What is left to undo on the sender after a transfer: its authorization of the receiver's key.
/// Run once the transfer is recorded, so a sender whose connection is busy (it started receiving
/// another unit meanwhile) does not hold up the receiver passing the unit on.
pub(super) struct Revoke<'a> {
    from: &'a Node<'a>,
    tag: String,
}

impl Revoke<'_> {
    pub(super) fn run(self) {
        let _ = self.from.remote.run(&Cmd::new(["sh", "-c", AUTHORIZE, "kbin-relay-auth", "remove", "", self.tag.as_str()]));
    }
}

/// One host-to-host transfer of the files of `u` from `from` to `to`; `Err` says why it did not
/// happen (nothing of it is kept then). The authorization on `from` is left to the [`Revoke`].
pub(super) fn transfer<'a>(known: &KnownHosts, from: &'a Node<'a>, to: &Node<'_>, u: &Unit) -> (Result<(), String>, Option<Revoke<'a>>) {
    let tag = format!("kbin-relay-{}-{}", &u.blobs[0].sha[..12], nonce());
    let dir = format!("/var/lib/kbin/relay/{tag}");
    let port = from.host.ssh.port;
    let addr = from.host.address.to_string();
    let lines = known.lines_for(&addr, port);
    if lines.is_empty() {
        return (Err(format!("no verified host key of {} in known_hosts", from.host.name)), None);
    }
    let mut authorized = false;
    let r = (|| -> Result<(), String> {
        let pubkey = to.remote.check(&Cmd::new(["sh", "-c", KEYGEN, "kbin-relay-key", dir.as_str(), tag.as_str()]).sudo()).map_err(|e| e.chain())?.stdout_str().trim().to_string();
        let known_text = lines.join("\n") + "\n";
        to.remote.write_file(&format!("{dir}/known_hosts"), &Source::bytes(known_text.into_bytes()), &WriteOpts::mode(0o600)).map_err(|e| e.chain())?;
        // the digests are hex and the store a fixed path: nothing in the command needs quoting
        let paths: Vec<String> = u.blobs.iter().map(|b| blob_path(&b.sha)).collect();
        let line = format!("restrict,from=\"{}\",command=\"exec cat -- {}\" {pubkey}", to.host.address, paths.join(" "));
        authorized = true;
        from.remote.check(&Cmd::new(["sh", "-c", AUTHORIZE, "kbin-relay-auth", "add", line.as_str(), tag.as_str()])).map_err(|e| e.chain())?;
        let target = format!("{}@{addr}", from.remote.user());
        let mut argv: Vec<String> = ["sh", "-c", FETCH, "kbin-relay-fetch", dir.as_str(), target.as_str(), &port.to_string(), BLOBS_DIR].iter().map(|s| s.to_string()).collect();
        argv.extend(u.blobs.iter().map(|b| format!("{}:{}", b.sha, b.src.len())));
        let out = to.remote.run(&Cmd::new(argv).sudo()).map_err(|e| e.chain())?;
        if out.success() { Ok(()) } else { Err(out.stderr_str().trim().lines().last().unwrap_or("the fetch failed").to_string()) }
    })();
    let _ = to.remote.run(&Cmd::new(["rm", "-rf", "--", dir.as_str()]).sudo());
    (r, authorized.then_some(Revoke { from, tag }))
}

fn nonce() -> String {
    let mut b = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("the system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_is_removed_by_renaming_a_new_file_into_place_the_others_kept() {
        use std::os::unix::fs::MetadataExt;
        let home = tempfile::tempdir().unwrap();
        let auth = |args: &[&str]| {
            let ok = std::process::Command::new("sh").arg("-c").arg(AUTHORIZE).arg("kbin-relay-auth").args(args).env("HOME", home.path()).status().unwrap().success();
            assert!(ok, "{args:?}");
        };
        let f = home.path().join(".ssh/authorized_keys");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "ssh-ed25519 AAAA operator\n").unwrap();
        auth(&["add", "restrict ssh-ed25519 BBBB kbin-relay-one", "kbin-relay-one"]);
        auth(&["add", "restrict ssh-ed25519 CCCC kbin-relay-two", "kbin-relay-two"]);
        let before = std::fs::metadata(&f).unwrap().ino();
        auth(&["remove", "", "kbin-relay-one"]);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "ssh-ed25519 AAAA operator\nrestrict ssh-ed25519 CCCC kbin-relay-two\n");
        // sshd reading it meanwhile saw the whole old file: the new one was renamed over it
        assert_ne!(std::fs::metadata(&f).unwrap().ino(), before);
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn transfer_tags_are_unique_and_name_the_blob() {
        let a = nonce();
        assert_eq!(a.len(), 12);
        assert_ne!(a, nonce());
        assert_eq!(blob_path("ab12"), "/var/lib/kbin/blobs/ab12");
    }
}
