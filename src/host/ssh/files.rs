//! The file protocol: constant `sh -c` scripts for atomic writes, reads and hashes, and the
//! path rules every file operation checks.

use super::*;

/// The remote half of [`Remote::write_file`]. A constant: arguments arrive as `$1`..`$6`, content
/// on stdin. It answers `same` (nothing to do), `meta` (mode/owner fixed in place), `local` (the
/// content was in the host's relay store, `crate::engine::relay::BLOBS_DIR`, and is copied from
/// there) or `send` (then reads the content into a temp file in the same directory); either way
/// it verifies the digest of the temp file, sets owner and mode, fsyncs, keeps a backup if asked
/// and renames over the target.
pub(crate) const WRITE_SCRIPT: &str = r#"set -eu
dest=$1 mode=$2 owner=$3 want=$4 backup=$5 size=$6
sha() {
  # openssl uses the CPU's SHA instructions (several times faster than sha256sum on big files);
  # sha256sum starts faster, so small files use it
  h=
  if [ "$2" -gt 1048576 ]; then h=$(openssl dgst -sha256 -r < "$1" 2>/dev/null) || h=; fi
  h=${h%% *}
  case "$h" in
    ????????????????????????????????????????????????????????????????) ;;
    *) h=$(sha256sum < "$1") && h=${h%% *} ;;
  esac
  echo "$h"
}
if [ -f "$dest" ]; then
  cur=$(stat -c '%s %a %U:%G' -- "$dest")
  cursize=${cur%% *} cur=${cur#* }
  curmode=${cur%% *} curown=${cur#* }
  if [ "$cursize" = "$size" ] && [ "$(sha "$dest" "$size")" = "$want" ]; then
    fix=
    [ "$curmode" = "$mode" ] || fix=1
    case "$owner" in
      "") ;;
      *:*) [ "$curown" = "$owner" ] || fix=1 ;;
      *) [ "${curown%%:*}" = "$owner" ] || fix=1 ;;
    esac
    if [ -z "$fix" ]; then echo same; exit 0; fi
    [ -z "$owner" ] || chown -- "$owner" "$dest"
    chmod -- "$mode" "$dest"
    echo meta
    exit 0
  fi
fi
dir=$(dirname -- "$dest") base=$(basename -- "$dest")
mkdir -p -- "$dir"
# temp files of pushes whose shell was killed (its pid is in the name and gone); older kbins
# named them without a pid
for old in "$dir/.$base".kbin-*; do
  [ -f "$old" ] || continue
  rest=${old##*.kbin-}
  case $rest in
    *-*) pid=${rest%%-*}; case $pid in ''|*[!0-9]*) continue ;; esac; [ -d "/proc/$pid" ] && continue ;;
    ??????) ;;
    *) continue ;;
  esac
  rm -f -- "$old"
done
tmp=$(mktemp "$dir/.$base.kbin-$$-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
got=
blob=/var/lib/kbin/blobs/$want
# the relay's copy, taken by a hard link (no second copy of the bytes; the store keeps its name, as
# the host may still be passing the file on, and goes when the run ends) or copied across file
# systems. The store is root's and holds only what was verified against its
# name (the digest) on arrival, so a link is not hashed again; a copy is.
if [ -f "$blob" ] && [ "$(stat -c %s -- "$blob")" = "$size" ]; then
  if ln -f -- "$blob" "$tmp" 2>/dev/null; then
    got=$want
  elif cp -- "$blob" "$tmp" 2>/dev/null; then
    got=$(sha "$tmp" "$size")
  fi
fi
if [ "$got" = "$want" ]; then
  echo local
else
  echo send
  cat > "$tmp"
  got=$(sha "$tmp" "$size")
fi
if [ "$got" != "$want" ]; then
  echo "received $(wc -c < "$tmp") bytes with sha256 $got, expected $want: the upload was cut short or the source changed" >&2
  exit 3
fi
[ -z "$owner" ] || chown -- "$owner" "$tmp"
chmod -- "$mode" "$tmp"
sync -- "$tmp"
if [ -n "$backup" ] && [ -f "$dest" ]; then
  ln -f -- "$dest" "$backup" 2>/dev/null || cp -p -- "$dest" "$backup"
  echo backup
fi
mv -f -- "$tmp" "$dest"
trap - EXIT HUP INT TERM PIPE
sync -- "$dir" 2>/dev/null || true
echo done
"#;

/// `sh -c` helpers: small constant scripts, arguments as positional parameters.
pub(super) const READ_SCRIPT: &str = r#"[ -e "$1" ] || exit 3; exec cat -- "$1""#;
/// Where [`SHA_MANY_SCRIPT`] keeps the digests of large files it read, by device, inode, size
/// and change time: root's, on each host.
pub const DIGEST_CACHE: &str = "/var/lib/kbin/sha256.cache";
/// The SHA-256 of every path after `$1` (the digest cache): one line each, the digest or `-` for
/// a missing file. The files to read are hashed in one process (openssl where it works: it uses
/// the CPU's SHA instructions). A file of 1 MiB or more whose device, inode, size and change time
/// (ns) are those the cache recorded with its digest is not read again: any write gives a file a
/// new change time and a rename a new inode, and the kernel sets the change time, no program can
/// set it back. A change time within 2 s of now is not recorded, as git does with racily clean
/// entries: a write in the same clock tick would keep it. The cache is replaced by a rename; a
/// run that cannot write it still answers.
pub(super) const SHA_MANY_SCRIPT: &str = r#"cache=$1; shift
[ $# -gt 0 ] || exit 0
now=$(date +%s)
dir=$(mktemp -d) || exit 4
trap 'rm -rf -- "$dir"' EXIT
cp -- "$cache" "$dir/cache" 2>/dev/null || : >"$dir/cache"
find -H "$@" -maxdepth 0 ! -type l -printf '%D:%i:%s:%C@ %p\n' >"$dir/keys" 2>/dev/null
# whether each path exists, as the shell sees it (a link to nothing does not); find, which gives
# the keys, may lack -printf (BusyBox): then nothing is taken from the cache
for f in "$@"; do if [ -e "$f" ]; then echo "+$f"; else echo "-$f"; fi; done >"$dir/args"
# a line per path: "-" missing, "= SHA KEY" known from the cache, "? KEY" to hash (KEY "." when
# the file is not to be recorded: small, or changed within the last 2 s)
awk -v now="$now" -v C="$dir/cache" -v K="$dir/keys" '
  FILENAME == C { cached[substr($0, length($1) + length($2) + 3)] = $1 " " $2; next }
  FILENAME == K { key[substr($0, length($1) + 2)] = $1; next }
  {
    p = substr($0, 2)
    if (substr($0, 1, 1) == "-") { print "-"; next }
    if (!(p in key)) { print "? ."; next }
    k = key[p]; split(k, f, ":")
    if (f[3] < 1048576 || f[4] + 0 >= now - 2) { print "? ."; next }
    if (substr(cached[p], 66) == k) { print "= " cached[p]; next }
    print "? " k
  }' "$dir/cache" "$dir/keys" "$dir/args" >"$dir/plan" || exit 4
: >"$dir/hash"; : >"$dir/sums"
exec 3<"$dir/plan"
for f in "$@"; do
  read -r st rest <&3
  [ "$st" = "?" ] && printf '%s\0' "$f" >>"$dir/hash"
done
exec 3<&-
# every file to hash in one process: openssl uses the CPU's SHA instructions (several times
# faster than sha256sum); sha256sum where openssl does not answer a digest a file
if [ -s "$dir/hash" ]; then
  n=$(tr -cd '\0' <"$dir/hash" | wc -c)
  xargs -0 openssl dgst -sha256 -r <"$dir/hash" >"$dir/sums" 2>/dev/null
  if [ "$(grep -c '^[0-9a-f]\{64\} ' "$dir/sums")" != "$n" ]; then
    xargs -0 sha256sum -- <"$dir/hash" >"$dir/sums" || exit 4
  fi
fi
# the answers in order; the cache keeps what it knew of other paths, and these paths' keys
awk -v C="$dir/cache" -v P="$dir/plan" -v S="$dir/sums" -v new="$dir/new" '
  FILENAME == C { old[substr($0, length($1) + length($2) + 3)] = $0; next }
  FILENAME == P { plan[++np] = $0; next }
  FILENAME == S { l = $0; sub(/^\\/, "", l); sum[++ns] = substr(l, 1, 64); next }
  {
    p = substr($0, 2)
    split(plan[FNR], w, " ")
    if (w[1] == "-") { print "-"; line = "" }
    else if (w[1] == "=") { print w[2]; line = w[2] " " w[3] " " p }
    else { s = sum[++h]; print s; line = (w[2] == "." ? "" : s " " w[2] " " p) }
    if (old[p] != line) dirty = 1
    delete old[p]
    if (line != "") keep[p] = line
  }
  END {
    if (!dirty) exit 0
    for (p in old) print old[p] > new
    for (p in keep) print keep[p] > new
    close(new)
    print "dirty" > "/dev/stderr"
  }' "$dir/cache" "$dir/plan" "$dir/sums" "$dir/args" 2>"$dir/dirty" || exit 4
if [ -s "$dir/dirty" ]; then
  : >>"$dir/new"
  mkdir -p -- "${cache%/*}" 2>/dev/null && cp -- "$dir/new" "$cache.$$" 2>/dev/null && mv -f -- "$cache.$$" "$cache" 2>/dev/null || rm -f -- "$cache.$$"
fi
exit 0"#;

/// `<path>.kbin-backup-<UTC timestamp>`.
pub(crate) fn backup_name(path: &str) -> String {
    format!("{path}.kbin-backup-{}", crate::fsutil::utc_stamp())
}

pub(crate) fn check_path(host: &str, path: &str) -> Result<(), HostError> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains(['\0', '\n']) || path.split('/').any(|s| s == "..") {
        return Err(HostError::Invalid { host: host.into(), message: format!("{path:?} is not an absolute file path") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::sha256_hex;

    /// The script as a host runs it, with the local `sh`: its lines.
    fn sums(cache: &std::path::Path, paths: &[&std::path::Path]) -> Vec<String> {
        sums_with(cache, paths, None)
    }

    /// The same with `path` first in `PATH`.
    fn sums_with(cache: &std::path::Path, paths: &[&std::path::Path], path: Option<&std::path::Path>) -> Vec<String> {
        let mut cmd = std::process::Command::new("sh");
        if let Some(dir) = path {
            cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
        let out = cmd.arg("-c").arg(SHA_MANY_SCRIPT).arg("kbin-sha256").arg(cache).args(paths).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    #[test]
    fn every_path_gets_its_digest_in_order_and_a_missing_one_a_dash() {
        let d = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(d.path().join("big"), &big).unwrap();
        std::fs::write(d.path().join("with space"), b"small\n").unwrap();
        std::os::unix::fs::symlink("big", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", d.path().join("dangling")).unwrap();
        let p = |n: &str| d.path().join(n);
        let (b, s) = (sha256_hex(&big), sha256_hex(b"small\n"));
        let got = sums(&p("cache"), &[&p("big"), &p("missing"), &p("with space"), &p("link"), &p("dangling"), &p("big")]);
        assert_eq!(got, [b.as_str(), "-", s.as_str(), b.as_str(), "-", b.as_str()]);
        assert!(!p("cache").exists(), "files changed within 2 s are not recorded");
    }

    #[test]
    fn a_large_file_is_read_once_until_it_is_written_or_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(p("big"), &big).unwrap();
        std::fs::write(p("other"), &big[..1_500_000]).unwrap();
        std::fs::write(p("small"), b"small\n").unwrap();
        // older than the 2 s a change time must have before it is recorded
        std::thread::sleep(std::time::Duration::from_millis(3100));
        let (b, o, s) = (sha256_hex(&big), sha256_hex(&big[..1_500_000]), sha256_hex(b"small\n"));
        assert_eq!(sums(&p("cache"), &[&p("big"), &p("small"), &p("other")]), [b.clone(), s, o.clone()]);
        let cache = std::fs::read_to_string(p("cache")).unwrap();
        assert_eq!(cache.lines().count(), 2, "the two large files, not the small one: {cache}");
        // the cache answers: a digest planted there is what comes back, the file is not read
        let fake = "0".repeat(64);
        std::fs::write(p("cache"), cache.replace(&b, &fake)).unwrap();
        assert_eq!(sums(&p("cache"), &[&p("big")]), [fake.clone()]);
        // a write in place, same size: a new change time, read again
        let mut changed = big.clone();
        changed[10] ^= 0xff;
        std::fs::OpenOptions::new().write(true).open(p("big")).and_then(|mut f| std::io::Write::write_all(&mut f, &changed)).unwrap();
        assert_eq!(sums(&p("cache"), &[&p("big")]), [sha256_hex(&changed)]);
        // replaced by a rename (a new inode, a new change time), the fake digest planted again
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(p("cache"), cache.replace(&b, &fake)).unwrap();
        std::fs::write(p("new"), &big).unwrap();
        std::fs::rename(p("new"), p("big")).unwrap();
        assert_eq!(sums(&p("cache"), &[&p("big")]), [b.clone()]);
        // the other file's entry was kept through runs that did not ask for it
        assert!(std::fs::read_to_string(p("cache")).unwrap().contains(&o));
        // a find without -printf (BusyBox): every file hashed, nothing taken from the cache
        std::fs::write(p("cache"), std::fs::read_to_string(p("cache")).unwrap().replace(&o, &fake)).unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("find"), "#!/bin/sh\necho 'find: unrecognized: -printf' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(bin.join("find"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(sums_with(&p("cache"), &[&p("other"), &p("missing"), &p("small")], Some(&bin)), [o.clone(), "-".into(), sha256_hex(b"small\n")]);
    }

    #[test]
    fn a_path_with_a_newline_is_refused() {
        assert!(check_path("h1", "/etc/a\nb").is_err());
        assert!(check_path("h1", "/etc/a b").is_ok());
    }
}
