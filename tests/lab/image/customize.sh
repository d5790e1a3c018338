#!/usr/bin/env bash
# Turns a fresh debootstrap tree into the lab image. Runs on the machine (not in a host) as
#   customize.sh ROOTFS
# Everything per host (SSH keys, /etc/hosts, host name, machine id) is filled in by `lab up`; the
# image holds nothing that differs between hosts or labs. Changing this file changes the image's
# cache key.
set -euo pipefail

root=${1:?usage: customize.sh ROOTFS}
[[ -x $root/usr/lib/systemd/systemd ]] || { echo "customize.sh: $root is not a systemd rootfs" >&2; exit 1; }

in_root() { chroot "$root" "$@"; }

# No DNS in the lab: an inherited resolv.conf makes Go programs (etcd) hang on `localhost`.
rm -f "$root/etc/resolv.conf"
: >"$root/etc/resolv.conf"
# `lab up` appends the lab's host names to each host's copy.
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
# Each host takes its name from `systemd-nspawn -M` and makes its own machine id at boot.
rm -f "$root/etc/hostname"
: >"$root/etc/machine-id"
# systemd copies this into an empty /etc/machine-id, which made every host share one id; without
# it each host takes the UUID `lab up` gives nspawn (--uuid)
rm -f "$root/var/lib/dbus/machine-id"
: >"$root/etc/fstab"

# kbin starts these itself.
in_root systemctl disable nginx.service keepalived.service

# The real kubelet, containerd and runc create cgroups in every v1 controller. On this machine's
# hybrid layout systemd-nspawn mounts the v1 hierarchies read-only inside a host; a bind remount
# makes them writable (a plain remount is refused: the superblock is the machine's). Each host
# boots inside its own cgroups (see `boot_host` in tests/lab/lab), so it manages only its own
# subtree. A VM has writable cgroups: this is the lab's business.
cat >"$root/etc/systemd/system/kbin-lab-cgroups.service" <<'UNIT'
[Unit]
Description=kbin lab: writable cgroup v1 controllers (systemd-nspawn mounts them read-only)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup/*; do mountpoint -q "$d" && mount -o remount,bind,rw "$d"; done'

[Install]
WantedBy=sysinit.target
UNIT
in_root systemctl enable kbin-lab-cgroups.service

# Nothing runs that a test did not ask for: no apt timers (there is no internet in the lab), no
# gettys on a console nobody reads.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            fstrim.timer logrotate.timer man-db.timer console-getty.service getty@.service; do
    in_root systemctl mask "$unit" >/dev/null 2>&1 || true
done

# sshd: keys only; one host key per host, written by `lab up` (the image carries none).
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/ssh/sshd_config.d/kbin-lab.conf" <<'SSHD'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
SSHD
install -d -m 700 "$root/root/.ssh"

# The sudo path: a user with passwordless sudo. '*' (no password) rather than '!' (locked) so
# that sshd accepts its key.
if ! in_root getent passwd kbin >/dev/null; then
    in_root useradd --create-home --shell /bin/bash --user-group kbin
fi
in_root usermod --password '*' kbin
install -d -m 700 -o "$(in_root id -u kbin)" -g "$(in_root id -g kbin)" "$root/home/kbin/.ssh"
echo 'kbin ALL=(ALL:ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/kbin"
chmod 440 "$root/etc/sudoers.d/kbin"
in_root visudo -cf /etc/sudoers.d/kbin >/dev/null

# Smaller image; hosts never run apt.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
