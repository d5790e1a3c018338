# Sourced by the lab e2e scenarios: the real upstream components (tests/upstream/build.sh, built
# from their official Go modules and cached outside the repo) served by the lab mirror in
# upstream's release layout, and pinned for the scenario's cluster with `kbin pin`, the way an
# operator pins a build they vetted. Expects: $repo, $lab, $work, $kbin and a k() function that
# runs kbin on the scenario's cluster file; defines $kubectl and kc_admin().
# shellcheck shell=bash

# Builds (or finds cached) and publishes every artifact; writes $work/upstream/.
upstream_publish() {
  LAB=$lab "$repo/tests/upstream/build.sh" --out "$work/upstream" --publish \
    >"$work/upstream.list" 2>"$work/upstream.err" || { tail -n 30 "$work/upstream.err" >&2; return 1; }
  kubectl=$work/upstream/bin/kubectl
}

# `kbin pin` for every artifact the mirror serves (their digests are this build's, not upstream's).
upstream_pin() {
  local comp ver path sum
  while IFS=$'\t' read -r comp ver path sum; do
    k -q pin "$comp" "$ver" "$sum" >/dev/null 2>>"$work/pin.err" || { cat "$work/pin.err" >&2; echo "kbin pin $comp $ver failed" >&2; return 1; }
  done <"$work/upstream.list"
}

# The real kubectl, as the cluster's admin, from the operator namespace: kc_admin [SERVER] -- ARGS
kc_admin() {
  local server=()
  if [[ $1 != -- ]]; then server=(--server "$1"); fi
  shift
  [[ ${1:-} == -- ]] && shift
  "$lab" op -- "$kubectl" --kubeconfig "$work/pki/kubeconfigs/admin.kubeconfig" --request-timeout=8s "${server[@]}" "$@"
}

# The lab's container images (tests/upstream/images.sh: pause, CoreDNS, metrics-server built from
# their Go modules, busybox from Debian; no registry anywhere) published to the lab mirror, and the
# cluster-file tables that make every node import them: [images.*] with their digests, the
# add-ons, and the one containerd setting the lab's machine needs. Appends to $work/cluster.toml.
upstream_images() {
  local mirror key ref path sum file
  mirror=$("$lab" mirror url)
  LAB=$lab "$repo/tests/upstream/images.sh" --publish >"$work/images.list" 2>"$work/images.err" ||
    { tail -n 30 "$work/images.err" >&2; return 1; }
  {
    printf '\n[addons]\nmetrics_server = true\n'
    while IFS=$'\t' read -r key ref path sum file; do
      printf '\n[images.%s]\nref = "%s"\nsha256 = "%s"\nurl = "%s/images/%s"\n' "$key" "$ref" "$sum" "$mirror" "$file"
    done <"$work/images.list"
    cat <<'TOML'

# kbin runs here without CAP_SYS_RESOURCE, so no process may lower an oom_score_adj: containerd
# must not ask runc to (pod sandboxes ask for -998). A VM needs no such setting.
[containerd.config.plugins."io.containerd.cri.v1.runtime"]
restrict_oom_score_adj = true
TOML
  } >>"$work/cluster.toml"
}
