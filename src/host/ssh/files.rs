//! The file protocol: constant `sh -c` scripts for atomic writes, reads and hashes, and the
//! path rules every file operation checks.

use super::*;

/// What both write scripts share: `sha` (the digest of `$1`, `$2` bytes long), `in_place` (says
/// `same` when `$dest` already holds the content, mode and owner asked, or fixes the mode and
/// owner and says `meta` when only those differ), `sweep` (removes the temp files of pushes whose
/// shell was killed), `temp_for_dest` (the temp file beside `$dest`, removed on exit until
/// renamed) and `install` (owner, mode, fsync, the backup if asked, the rename; sets
/// `kept` when it kept a backup). Each file's parameters are the variables `dest mode owner want
/// backup size`.
macro_rules! write_prelude {
    () => {
        r#"set -eu
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
in_place() {
  [ -f "$dest" ] || return 0
  cur=$(stat -c '%s %a %U:%G' -- "$dest")
  cursize=${cur%% *} cur=${cur#* }
  curmode=${cur%% *} curown=${cur#* }
  [ "$cursize" = "$size" ] && [ "$(sha "$dest" "$size")" = "$want" ] || return 0
  fix=
  [ "$curmode" = "$mode" ] || fix=1
  case "$owner" in
    "") ;;
    *:*) [ "$curown" = "$owner" ] || fix=1 ;;
    *) [ "${curown%%:*}" = "$owner" ] || fix=1 ;;
  esac
  if [ -z "$fix" ]; then echo same; return 0; fi
  [ -z "$owner" ] || chown -- "$owner" "$dest"
  chmod -- "$mode" "$dest"
  echo meta
}
# temp files of pushes whose shell was killed (its pid is in the name and gone); older kbins
# named them without a pid
sweep() {
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
}
# a temp file beside $dest (its directory made), removed if the run ends before its rename
temp_for_dest() {
  dir=$(dirname -- "$dest") base=$(basename -- "$dest")
  mkdir -p -- "$dir"
  sweep
  tmp=$(mktemp "$dir/.$base.kbin-$$-XXXXXX")
  trap 'rm -f -- "$tmp"' EXIT
  trap 'exit 1' HUP INT TERM PIPE
}
install() {
  [ -z "$owner" ] || chown -- "$owner" "$tmp"
  chmod -- "$mode" "$tmp"
  sync -- "$tmp"
  kept=
  if [ -n "$backup" ] && [ -f "$dest" ]; then
    ln -f -- "$dest" "$backup" 2>/dev/null || cp -p -- "$dest" "$backup"
    kept=1
  fi
  mv -f -- "$tmp" "$dest"
  trap - EXIT HUP INT TERM PIPE
  sync -- "$dir" 2>/dev/null || true
}
"#
    };
}

/// The remote half of [`Remote::write_file`]. A constant: arguments arrive as `$1`..`$6`, content
/// on stdin. It answers `same` (nothing to do), `meta` (mode/owner fixed in place), `local` (the
/// content was in the host's relay store, `crate::engine::relay::BLOBS_DIR`, and is copied from
/// there) or `send` (then reads the content into a temp file in the same directory); either way
/// it verifies the digest of the temp file, sets owner and mode, fsyncs, keeps a backup if asked
/// and renames over the target.
pub(crate) const WRITE_SCRIPT: &str = concat!(
    write_prelude!(),
    r#"dest=$1 mode=$2 owner=$3 want=$4 backup=$5 size=$6
st=$(in_place)
if [ -n "$st" ]; then echo "$st"; exit 0; fi
temp_for_dest
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
install
[ -z "$kept" ] || echo backup
echo done
"#
);

/// The remote half of [`Remote::write_files`] for small files: one run writes them all, each as
/// [`WRITE_SCRIPT`] does (a temp file in its directory, digest checked, owner, mode, fsync, the
/// backup, the rename), in order. Arguments: six per file (`dest mode owner want backup size`);
/// stdin: the contents one after the other, each exactly `size` bytes. A line per file written:
/// `N same|meta|new|backup|replaced` (`N` counts from 0); the first file that fails stops the run
/// (exit 3, the cause on stderr), and the files before it stay written.
pub(crate) const WRITE_MANY_SCRIPT: &str = concat!(
    write_prelude!(),
    r#"n=0
while [ $# -ge 6 ]; do
  dest=$1 mode=$2 owner=$3 want=$4 backup=$5 size=$6
  shift 6
  temp_for_dest
  # exactly this file's bytes: dd asks for no more than it lacks (head may read ahead)
  [ "$size" = 0 ] || dd bs="$size" count=1 iflag=fullblock of="$tmp" 2>/dev/null || true
  got=$(sha "$tmp" "$size")
  if [ "$got" != "$want" ]; then
    echo "received $(wc -c < "$tmp") bytes with sha256 $got, expected $want: the upload was cut short or the source changed" >&2
    exit 3
  fi
  st=$(in_place)
  if [ -n "$st" ]; then
    rm -f -- "$tmp"
    trap - EXIT HUP INT TERM PIPE
  else
    st=replaced
    [ -e "$dest" ] || st=new
    install
    [ -z "$kept" ] || st=backup
  fi
  echo "$n $st"
  n=$((n + 1))
done
[ $# -eq 0 ] || { echo "$# arguments left over: six are needed per file" >&2; exit 2; }
"#
);

/// At most this many content bytes go in one run of [`WRITE_MANY_SCRIPT`] (well inside an SSH
/// channel's window: the remote side may stop reading at a bad file).
const SMALL_RUN_BYTES: u64 = 1 << 20;

/// How many of `files`, from the first, go in one run of [`WRITE_MANY_SCRIPT`]: in-memory contents
/// (no local file to stream, no progress to show) with the same sudo, [`SMALL_RUN_BYTES`] in all.
/// 0: the first file is written on its own.
pub(super) fn small_run(files: &[FileWrite<'_>]) -> usize {
    let mut total = 0;
    files
        .iter()
        .take_while(|f| {
            total += f.src.len();
            f.src.local_path().is_none() && f.opts.progress.is_none() && f.opts.sudo == files[0].opts.sudo && total <= SMALL_RUN_BYTES
        })
        .count()
}

impl SshHost {
    /// Write `files` (a [`small_run`]) in one run of [`WRITE_MANY_SCRIPT`].
    pub(super) fn write_small(&self, files: &[FileWrite<'_>], done: &mut dyn FnMut(usize, WriteOutcome)) -> Result<(), HostError> {
        let mut argv = vec!["sh".to_string(), "-c".into(), WRITE_MANY_SCRIPT.into(), "kbin-write".into()];
        let mut body = Vec::new();
        let mut backups = Vec::new();
        for f in files {
            check_path(&self.name, f.path)?;
            let backup = if f.opts.backup { backup_name(f.path) } else { String::new() };
            argv.extend([f.path.to_string(), format!("{:o}", f.opts.mode), f.opts.owner.clone().unwrap_or_default(), f.src.sha256().into(), backup.clone(), f.src.len().to_string()]);
            backups.push(backup);
            f.src.open().and_then(|mut r| r.read_to_end(&mut body)).map_err(|e| HostError::Local { host: self.name.clone(), path: Default::default(), source: e })?;
        }
        let mut cmd = Cmd::new(argv);
        cmd.sudo = files[0].opts.sudo;
        let what = if let [f] = files { format!("write {}", f.path) } else { format!("write {} files", files.len()) };
        let (out, _) = self.run_as(&cmd, &what, Feed::Now(Box::new(io::Cursor::new(body))), Deadline::Idle(self.opts.io_timeout), None)?;
        let (answers, odd) = answers(&out.stdout_str(), files.len());
        let written = answers.len();
        for (k, a) in answers.into_iter().enumerate() {
            let sent = files[k].src.len();
            let (changed, backup, created) = match a {
                Answer::Same => (false, None, false),
                Answer::Meta => (true, None, false),
                Answer::New => (true, None, true),
                Answer::Backup => (true, Some(backups[k].clone()), false),
                Answer::Replaced => (true, None, false),
            };
            done(k, WriteOutcome { changed, bytes_sent: sent, backup, created });
        }
        if !out.success() || written < files.len() || odd.is_some() {
            let path = files.get(written).unwrap_or(&files[0]).path;
            let stderr = out.stderr_str().trim().to_string();
            let message = odd.or((!stderr.is_empty()).then_some(stderr)).unwrap_or_else(|| format!("the write stopped (exit {})", out.status));
            return Err(HostError::Write { host: self.name.clone(), path: path.into(), message });
        }
        Ok(())
    }
}

/// What [`WRITE_MANY_SCRIPT`] said of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Same,
    Meta,
    New,
    Backup,
    Replaced,
}

/// The answers of a run of [`WRITE_MANY_SCRIPT`] over `n` files, in order: one line per file
/// written, numbered from 0 (fewer than `n` when a file failed). A line that is not such an
/// answer ends the list, and is returned as what went wrong.
pub(super) fn answers(stdout: &str, n: usize) -> (Vec<Answer>, Option<String>) {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let a = match line.split_once(' ') {
            Some((k, word)) if k.parse() == Ok(out.len()) && out.len() < n => match word {
                "same" => Some(Answer::Same),
                "meta" => Some(Answer::Meta),
                "new" => Some(Answer::New),
                "backup" => Some(Answer::Backup),
                "replaced" => Some(Answer::Replaced),
                _ => None,
            },
            _ => None,
        };
        match a {
            Some(a) => out.push(a),
            None => return (out, Some(format!("unexpected answer {line:?}"))),
        }
    }
    (out, None)
}

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

    /// [`WRITE_MANY_SCRIPT`] as a host runs it, with the local `sh`: (status, stdout, stderr).
    fn write_many(files: &[(&std::path::Path, &str, &[u8], &[u8], &str)]) -> (i32, String, String) {
        use std::io::Write;
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", WRITE_MANY_SCRIPT, "kbin-write"]);
        let mut body = Vec::new();
        for (path, mode, content, sent, backup) in files {
            cmd.args([path.to_str().unwrap(), mode, "", &sha256_hex(content), backup, &content.len().to_string()]);
            body.extend_from_slice(sent);
        }
        let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(&body);
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn mode_of(p: &std::path::Path) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o7777
    }

    #[test]
    fn many_files_are_written_in_one_run_each_answered_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("old.conf"), b"v1\n").unwrap();
        std::fs::write(p("same.conf"), b"same\n").unwrap();
        std::fs::set_permissions(p("same.conf"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::write(p("mode.conf"), b"mode\n").unwrap();
        std::fs::set_permissions(p("mode.conf"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::write(p("nobackup.conf"), b"x\n").unwrap();
        let backup = p("old.conf.bak");
        let (status, out, err) = write_many(&[
            (&p("new/dir/key.pem"), "600", b"KEY\n", b"KEY\n", ""),
            (&p("old.conf"), "644", b"v2\n", b"v2\n", backup.to_str().unwrap()),
            (&p("same.conf"), "644", b"same\n", b"same\n", ""),
            (&p("mode.conf"), "600", b"mode\n", b"mode\n", ""),
            (&p("empty"), "644", b"", b"", ""),
            (&p("nobackup.conf"), "644", b"y\n", b"y\n", ""),
        ]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, "0 new\n1 backup\n2 same\n3 meta\n4 new\n5 replaced\n");
        assert_eq!(answers(&out, 6), (vec![Answer::New, Answer::Backup, Answer::Same, Answer::Meta, Answer::New, Answer::Replaced], None));
        assert_eq!(std::fs::read(p("new/dir/key.pem")).unwrap(), b"KEY\n");
        assert_eq!(mode_of(&p("new/dir/key.pem")), 0o600);
        assert_eq!((std::fs::read(p("old.conf")).unwrap(), std::fs::read(&backup).unwrap()), (b"v2\n".to_vec(), b"v1\n".to_vec()));
        assert_eq!(mode_of(&p("mode.conf")), 0o600);
        assert_eq!(std::fs::read(p("empty")).unwrap(), b"");
        assert_eq!(std::fs::read(p("nobackup.conf")).unwrap(), b"y\n");
        let temps: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".kbin-")).collect();
        assert!(temps.is_empty(), "no temp file is left: {temps:?}");
    }

    #[test]
    fn a_file_whose_bytes_do_not_match_stops_the_run_and_keeps_the_files_before_it() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("b.conf"), b"old b\n").unwrap();
        // b's bytes are not what its digest says (a source changed, a stream cut short)
        let (status, out, err) = write_many(&[(&p("a.conf"), "644", b"a\n", b"a\n", ""), (&p("b.conf"), "644", b"new b\n", b"NEW B\n", ""), (&p("c.conf"), "644", b"c\n", b"c\n", "")]);
        assert_eq!((status, out.as_str()), (3, "0 new\n"));
        assert!(err.contains("received 6 bytes with sha256") && err.contains("the upload was cut short or the source changed"), "{err}");
        assert_eq!(answers(&out, 3), (vec![Answer::New], None));
        assert_eq!(std::fs::read(p("a.conf")).unwrap(), b"a\n");
        assert_eq!(std::fs::read(p("b.conf")).unwrap(), b"old b\n", "the file that failed is untouched");
        assert!(!p("c.conf").exists(), "nothing after it is written");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".kbin-")).collect();
        assert!(left.is_empty(), "the failed file's temp file is removed: {left:?}");
        // too few bytes on stdin: the first file lacking them fails the same way
        let (status, out, _) = write_many(&[(&p("d.conf"), "644", b"dddd\n", b"dd", "")]);
        assert_eq!((status, out.as_str()), (3, ""));
        assert!(!p("d.conf").exists());
    }

    #[test]
    fn an_answer_out_of_order_or_unknown_ends_the_list_and_says_so() {
        assert_eq!(answers("0 new\n2 same\n", 3), (vec![Answer::New], Some("unexpected answer \"2 same\"".into())));
        assert_eq!(answers("0 new\n1 gone\n", 3).1, Some("unexpected answer \"1 gone\"".into()));
        assert_eq!(answers("0 new\n1 new\n", 1).0, vec![Answer::New], "no more answers than files");
        assert_eq!(answers("", 2), (vec![], None));
    }

    #[test]
    fn small_in_memory_files_with_the_same_sudo_share_a_run() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bin"), b"binary").unwrap();
        let (small, big) = (Source::bytes(b"conf".to_vec()), Source::bytes(vec![0u8; SMALL_RUN_BYTES as usize]));
        let file = Source::file(&d.path().join("bin")).unwrap();
        fn w(src: &Source, sudo: bool) -> FileWrite<'_> {
            FileWrite { path: "/etc/x", src, opts: WriteOpts { sudo, ..WriteOpts::default() } }
        }
        assert_eq!(small_run(&[w(&small, true), w(&small, true), w(&file, true), w(&small, true)]), 2, "a local file is streamed on its own");
        assert_eq!(small_run(&[w(&file, true), w(&small, true)]), 0);
        assert_eq!(small_run(&[w(&small, true), w(&small, false)]), 1, "sudo is one per run");
        assert_eq!(small_run(&[w(&big, true)]), 1, "one file of the whole budget still fits");
        assert_eq!(small_run(&[w(&small, true), w(&big, true)]), 1, "the budget is for the whole run");
        let progress = |_: u64| {};
        assert_eq!(small_run(&[FileWrite { path: "/etc/x", src: &small, opts: WriteOpts::default().progress(&progress) }]), 0, "a file with a progress bar is streamed on its own");
    }

    #[test]
    fn a_path_with_a_newline_is_refused() {
        assert!(check_path("h1", "/etc/a\nb").is_err());
        assert!(check_path("h1", "/etc/a b").is_ok());
    }
}
