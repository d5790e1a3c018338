#!/usr/bin/env bash
# Build kbin's fuzz targets and run each for a bounded time.
#
#   fuzz/run.sh SECONDS [TARGET...]     every target (or the ones named), SECONDS each, one after
#                                       the other; exit 1 on the first crash, with its input
#
# First the self-test of the cluster_file target's checks (they catch each injection issue 13
# found). Environment: JOBS=N runs N targets at once (default 1); SANITIZER=address builds with ASan
# (default none: kbin has no unsafe code of its own, and the targets run several times faster);
# FUZZ_TARGET_DIR (default fuzz/target); FUZZ_ARGS adds libFuzzer options.
#
# Needs a C++ compiler (libFuzzer is built from source: apt-get install g++) and cargo-fuzz, which
# this script installs with `cargo install` when it is missing (into CARGO_INSTALL_ROOT, default
# ~/.cargo). cargo-fuzz wants nightly compiler flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them, no nightly needed. Committed seeds are in fuzz/seeds/<target>/ (small text files);
# the growing corpus goes to fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/
# (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
case $secs in ''|*[!0-9]*) echo "SECONDS must be a number, not $secs" >&2; exit 2 ;; esac
all=(cluster_file pki_import tar_extract bundle_load known_hosts)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
jobs=${JOBS:-1}
sanitizer=${SANITIZER:-none}
target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install --locked cargo-fuzz@0.13.2)"
  cargo install --locked cargo-fuzz@0.13.2
fi

if [ "${SELFTEST:-1}" = 1 ]; then
  # the oracle of cluster_file must be able to fail: its tests feed it the injections issue 13
  # found and expect each to be caught
  echo "== self-test of the rendered-file checks (cargo test --lib; SELFTEST=0 skips it)"
  cargo test --locked --lib --target-dir "$target_dir/selftest" -q
fi

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
if [ ${#targets[@]} -eq ${#all[@]} ]; then
  cargo fuzz build -O -s "$sanitizer" --target-dir "$target_dir"
else
  for t in "${targets[@]}"; do cargo fuzz build -O -s "$sanitizer" --target-dir "$target_dir" "$t"; done
fi

run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${secs}s"
  # -timeout: one input running longer than 10 s is a finding (a hang), as is a panic;
  # -rss_limit_mb: so is using more than 2 GB
  if cargo fuzz run -O -s "$sanitizer" --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 ${FUZZ_ARGS:-} \
      >"artifacts/$t/last-run.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE' "artifacts/$t/last-run.log" | sed "s/^/   $t: /" || true
    return 0
  fi
  echo "!! $t found a crash; last lines of fuzz/artifacts/$t/last-run.log:" >&2
  tail -n 40 "artifacts/$t/last-run.log" >&2
  echo "!! reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s $sanitizer $t <the crash-* file named above>)" >&2
  return 1
}

failed=0
if [ "$jobs" -le 1 ]; then
  for t in "${targets[@]}"; do run_one "$t" || { failed=1; break; }; done
else
  pids=()
  for t in "${targets[@]}"; do
    run_one "$t" & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
fi
exit $failed
