# The checks every lab suite shares (sourced): ok, fail, check, and the verdict. A suite's last
# line is `suite_end`; a suite that stops before it (an unbound variable under `set -u`, a command
# that ends the shell) fails through its EXIT trap, however many checks passed until then.
passed=0 failed=0 suite_reached_end=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
suite_end() { suite_reached_end=1; }
# suite_verdict NAME: the count line; non-zero unless the suite reached its end, ran a check and
# every check passed
suite_verdict() {
  [[ $suite_reached_end == 1 ]] || fail "$1 reached its last line (it stopped before it)"
  echo "$1: $passed passed, $failed failed"
  [[ $failed -eq 0 && $passed -gt 0 && $suite_reached_end == 1 ]]
}
