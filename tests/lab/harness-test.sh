#!/usr/bin/env bash
# The lab suites' harness (tests/lab/harness.sh), tested on small suites of its own: a suite that
# reaches its end with every check passed exits 0; one that an unbound variable stops halfway, one
# with a failed check, and one that ran no check exit non-zero. Needs no root. Run by tests/run.sh.
set -uo pipefail
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
bad=0
suite() { # NAME BODY: a suite as the lab's are written
  printf '%s\n' "set -uo pipefail" ". '$here/harness.sh'" "trap 'suite_verdict $1; exit \$?' EXIT" "$2" >"$dir/$1.sh"
}
expect() { # NAME RC-WANTED(0|nonzero) LINE-WANTED
  local out rc
  out=$(bash "$dir/$1.sh" 2>&1); rc=$?
  if { [[ $2 == 0 ]] && ((rc != 0)); } || { [[ $2 == nonzero ]] && ((rc == 0)); } || ! grep -qxF "$3" <<<"$out"; then
    echo "FAIL - $1: exit $rc, wanted $2 and the line '$3'; it printed:"; sed 's/^/    /' <<<"$out"; bad=$((bad + 1))
  else
    echo "ok - $1: exit $rc, '$3'"
  fi
}
suite whole 'check "true holds" true
suite_end'
expect whole 0 "whole: 1 passed, 0 failed"
suite unbound 'check "first" true
echo "$no_such_variable"
check "second" true
suite_end'
expect unbound nonzero "FAIL - unbound reached its last line (it stopped before it)"
suite failing 'check "false holds" false
suite_end'
expect failing nonzero "failing: 0 passed, 1 failed"
suite empty 'suite_end'
expect empty nonzero "empty: 0 passed, 0 failed"
echo "harness-test: $((4 - bad)) passed, $bad failed"
[[ $bad -eq 0 ]]
