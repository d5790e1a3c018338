#!/usr/bin/env python3
"""Packs a root filesystem into a one-layer OCI image archive (tests/upstream/images.sh).

    oci-pack.py --rootfs DIR --ref REF --out FILE [--entrypoint JSON] [--cmd JSON]
                [--env K=V]... [--user USER] [--workdir DIR] [--file-cap PATH=CAP[,CAP]]...

FILE is an uncompressed tar of an OCI image layout, what `ctr images import` and kbin take:
oci-layout, index.json (one linux/amd64 manifest, named REF by both the containerd and the OCI
annotation) and blobs/sha256/ with the config, the manifest and the gzip layer. The layer holds
DIR's contents (not DIR itself) with owner 0:0, mtime 0 and DIR's modes, in sorted order;
--file-cap gives PATH (as in the image, e.g. /coredns) file capabilities, effective and permitted,
like `setcap CAP=+ep` (a security.capability xattr in the layer's PAX headers). Same inputs give a
byte-identical FILE. Prints the manifest digest.
"""
import argparse
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile

ARCH, OS = "amd64", "linux"
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Linux capability numbers are the positions in this list (linux/capability.h).
CAPS = ("chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
        "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
        "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
        "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
        "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
        "checkpoint_restore").split()


def fail(msg):
    sys.exit(f"oci-pack.py: {msg}")


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def file_cap_xattr(names):
    """struct vfs_cap_data, revision 2, effective flag set: what `setcap NAMES=+ep` stores."""
    bits = 0
    for name in names:
        name = name.lower().removeprefix("cap_")
        if name not in CAPS:
            fail(f"unknown capability '{name}'")
        bits |= 1 << CAPS.index(name)
    return struct.pack("<5I", 0x02000000 | 0x1, bits & 0xFFFFFFFF, 0, bits >> 32, 0)


def members(root):
    """(name in the layer, path) of everything under root, parents first, names sorted."""
    def walk(rel):
        path = os.path.join(root, rel) if rel else root
        for entry in sorted(os.listdir(path)):
            sub = f"{rel}/{entry}" if rel else entry
            yield sub, os.path.join(root, sub)
            if stat.S_ISDIR(os.lstat(os.path.join(root, sub)).st_mode):
                yield from walk(sub)
    return walk("")


def write_layer(root, caps, out):
    seen = {}  # (dev, ino) -> first name, for hard links
    used = set()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members(root):
            st = os.lstat(path)
            info = tarfile.TarInfo(name)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            data = None
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen[key]
                else:
                    seen[key] = name
                    info.size = st.st_size
                    data = path
            else:
                fail(f"{path}: only directories, regular files and symlinks go into a layer")
            if "/" + name in caps:
                # tarfile writes a value that is not UTF-8 as raw bytes (hdrcharset=BINARY)
                value = caps["/" + name].decode("utf-8", "surrogateescape")
                info.pax_headers = {"SCHILY.xattr.security.capability": value}
                used.add("/" + name)
            if data is None:
                tar.addfile(info)
            else:
                with open(data, "rb") as f:
                    tar.addfile(info, f)
    for path in set(caps) - used:
        fail(f"--file-cap {path}: no such file in the rootfs")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--ref", required=True, help="full image reference, e.g. registry.k8s.io/pause:3.10.1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--entrypoint", type=json.loads, help='JSON list, e.g. ["/pause"]')
    ap.add_argument("--cmd", type=json.loads, help='JSON list, e.g. ["sh"]')
    ap.add_argument("--env", action="append", default=[], help=f"K=V (default {DEFAULT_PATH})")
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--file-cap", action="append", default=[], metavar="PATH=CAP[,CAP]")
    a = ap.parse_args()
    for v in (a.entrypoint, a.cmd):
        if v is not None and not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            fail("--entrypoint and --cmd take a JSON list of strings")
    caps = {}
    for spec in a.file_cap:
        path, sep, names = spec.partition("=")
        if not sep or not path.startswith("/"):
            fail(f"--file-cap wants /PATH=CAP[,CAP], not '{spec}'")
        caps[path] = file_cap_xattr(names.split(","))

    blobs = {}  # digest hex -> bytes or a file path

    def blob(data):
        hexd = hashlib.sha256(data).hexdigest()
        blobs[hexd] = data
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(a.out))) as tmp:
        layer_tar = os.path.join(tmp, "layer.tar")
        with open(layer_tar, "wb") as f:
            write_layer(a.rootfs, caps, f)
        diff_id = hashlib.sha256()
        with open(layer_tar, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                diff_id.update(chunk)
        layer_gz = os.path.join(tmp, "layer.tar.gz")
        with open(layer_tar, "rb") as src, open(layer_gz, "wb") as dst:
            subprocess.run(["gzip", "-n", "-6", "-c"], stdin=src, stdout=dst, check=True)
        os.unlink(layer_tar)
        layer_digest = hashlib.sha256()
        with open(layer_gz, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                layer_digest.update(chunk)
        blobs[layer_digest.hexdigest()] = layer_gz
        layer = {"mediaType": MT_LAYER, "digest": f"sha256:{layer_digest.hexdigest()}",
                 "size": os.path.getsize(layer_gz)}

        cfg = {"Env": a.env or [DEFAULT_PATH], "WorkingDir": a.workdir}
        if a.entrypoint is not None:
            cfg["Entrypoint"] = a.entrypoint
        if a.cmd is not None:
            cfg["Cmd"] = a.cmd
        if a.user:
            cfg["User"] = a.user
        config = {
            "architecture": ARCH, "os": OS, "created": EPOCH, "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id.hexdigest()}"]},
            "history": [{"created": EPOCH, "created_by": "kbin tests/upstream/images.sh"}],
        }
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                    "config": {"mediaType": MT_CONFIG, **blob(canonical(config))}, "layers": [layer]}
        mdesc = {"mediaType": MT_MANIFEST, **blob(canonical(manifest)),
                 "platform": {"architecture": ARCH, "os": OS},
                 "annotations": {"io.containerd.image.name": a.ref, "org.opencontainers.image.ref.name": a.ref}}
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [mdesc]}

        files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}), "index.json": canonical(index)}
        for hexd, data in blobs.items():
            files[f"blobs/sha256/{hexd}"] = data
        partial = a.out + ".partial"
        with tarfile.open(partial, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            def entry(name, kind, mode, size=0):
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.size = kind, mode, size
                info.uid = info.gid = info.mtime = 0
                info.uname = info.gname = ""
                return info
            for d in ("blobs", "blobs/sha256"):
                tar.addfile(entry(d, tarfile.DIRTYPE, 0o755))
            for name in sorted(files):
                data = files[name]
                if isinstance(data, bytes):
                    tar.addfile(entry(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
                else:
                    with open(data, "rb") as f:
                        tar.addfile(entry(name, tarfile.REGTYPE, 0o644, os.path.getsize(data)), f)
        os.replace(partial, a.out)
    print(mdesc["digest"])


if __name__ == "__main__":
    main()
