#!/bin/sh
# Assembles the root filesystem of the test harness's inner Docker engine from this host's own
# binaries (no registry, nothing pulled) and prints it as a tar stream for `docker import`.
#
#   build.sh hash   prints a content hash of everything that goes in (the image tag)
#   build.sh tar    writes the rootfs tarball to stdout
#
# Used by tests/src/inner_engine.rs. Needs: ldd, cksum, sha256sum, GNU tar.
set -eu

# Binaries copied at their own path (usr-merged: /bin, /sbin, /lib and /lib64 are links into /usr).
BINARIES="
/usr/sbin/dockerd
/usr/bin/containerd
/usr/bin/containerd-shim-runc-v2
/usr/sbin/runc
/usr/bin/docker-init
/usr/sbin/docker-proxy
/usr/sbin/xtables-nft-multi
/bin/sh
/bin/mount
/bin/umount
/bin/mkdir
/sbin/ip
/bin/tar
"
# iptables finds its match and target plugins here at run time: ldd cannot see them.
XTABLES_DIR=/usr/lib/x86_64-linux-gnu/xtables
# Names dockerd runs iptables by, all one multi-call binary.
XTABLES_LINKS="iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore"

# The entrypoint: make what a container engine writes to writable, then exec dockerd with the flags
# given by the harness (`docker run <image> --bip …`).
entrypoint() {
    cat <<'SCRIPT'
#!/bin/sh
# Inner Docker engine for rfaas tests (tests/inner-engine/build.sh).
set -u
say() { echo "inner-engine: $*" >&2; }
mount -o remount,rw /sys || say "remount /sys rw failed"
for d in /sys/fs/cgroup/*; do
    [ -L "$d" ] && continue
    mount -o remount,bind,rw "$d" 2>/dev/null || say "remount $d rw failed"
done
# /proc/sys is a read-only mount of its own unless `systempaths=unconfined` (no grep here).
while read -r _ _ _ _ point _; do
    if [ "$point" = /proc/sys ]; then
        mount -o remount,bind,rw /proc/sys || say "remount /proc/sys rw failed"
    fi
done < /proc/self/mountinfo
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=711 tmpfs /var/lib/docker
# Swarm state stays on the container's own disk layer: a manager's raft log preallocates two
# 64 MB files, which on the tmpfs would be 128 MiB of memory per manager.
mkdir -p /var/lib/docker/swarm
mount --bind /swarm /var/lib/docker/swarm || say "bind /swarm failed: swarm state on tmpfs"
exec dockerd \
    -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375 --tls=false \
    --storage-driver=overlay2 --mtu=1400 "$@"
SCRIPT
}

# Every input file, with each library ldd lists for the binaries (sorted, unique).
inputs() {
    for b in $BINARIES; do
        echo "$b"
    done
    # One ldd run over every file (statically linked ones print no library).
    # shellcheck disable=SC2086
    ldd $BINARIES "$XTABLES_DIR"/*.so 2>/dev/null |
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u
    for p in "$XTABLES_DIR"/*; do
        echo "$p"
    done
}

for b in $BINARIES; do
    if [ ! -x "$b" ]; then
        echo "build.sh: $b is missing: the inner engine is built from this host's own Docker" \
            "(Debian: docker.io, containerd, runc, iptables, iproute2, mount, tar)" >&2
        exit 1
    fi
done
if [ ! -d "$XTABLES_DIR" ]; then
    echo "build.sh: $XTABLES_DIR (iptables plugins) is missing" >&2
    exit 1
fi

case "${1:-}" in
hash)
    # CRC and size of each file's content (0.03 s for 160 MB): any change of this script, a
    # binary or a library gives a new tag. cksum fails on a missing file.
    # shellcheck disable=SC2046
    manifest=$(cksum $(inputs))
    { cat "$0"; echo "$manifest"; } | sha256sum | cut -c1-16
    ;;
tar)
    root=$(mktemp -d "${TMPDIR:-/tmp}/rfa-inner-rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64"
    ln -s usr/bin "$root/bin"
    ln -s usr/sbin "$root/sbin"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"
    for f in $(inputs); do
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
    done
    for l in $XTABLES_LINKS; do
        ln -sf xtables-nft-multi "$root/usr/sbin/$l"
    done
    mkdir -p "$root/etc" "$root/tmp" "$root/run" "$root/var/lib/docker" "$root/proc" "$root/sys" \
        "$root/dev" "$root/root" "$root/swarm"
    ln -s ../run "$root/var/run"
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    printf 'root:x:0:\ndocker:x:999:\n' > "$root/etc/group"
    echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
    printf 'PRETTY_NAME="rfaas test inner engine"\nID=rfaas-inner\n' > "$root/etc/os-release"
    entrypoint > "$root/entrypoint.sh"
    chmod 755 "$root/entrypoint.sh"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf - .
    ;;
*)
    echo "usage: $0 hash|tar" >&2
    exit 2
    ;;
esac
