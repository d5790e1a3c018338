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
/// The SHA-256 of every argument (openssl where it works: it uses the CPU's SHA instructions):
/// one line each, the digest or `-` for a missing file.
pub(super) const SHA_MANY_SCRIPT: &str = r#"for f in "$@"; do
  if [ ! -e "$f" ]; then echo -; continue; fi
  h=$(openssl dgst -sha256 -r < "$f" 2>/dev/null) || h=
  h=${h%% *}
  case "$h" in
    ????????????????????????????????????????????????????????????????) echo "$h" ;;
    *) h=$(sha256sum < "$f") && echo "${h%% *}" || exit 4 ;;
  esac
done"#;

/// `<path>.kbin-backup-<UTC timestamp>`.
pub(crate) fn backup_name(path: &str) -> String {
    format!("{path}.kbin-backup-{}", crate::fsutil::utc_stamp())
}

pub(crate) fn check_path(host: &str, path: &str) -> Result<(), HostError> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') || path.split('/').any(|s| s == "..") {
        return Err(HostError::Invalid { host: host.into(), message: format!("{path:?} is not an absolute file path") });
    }
    Ok(())
}
