#!/bin/sh
# Run a command inside the Debian 13 controller (tests/cluster/harness/controller.py):
#
#   controller-enter.sh ROOTFS COMMAND [ARG...]
#
# In a mount namespace of its own (private propagation, so nothing is seen or left
# behind outside it): the controller's /proc, /dev, and this machine's /tmp, the
# working directory and every directory in $OVERLAY_FLANNEL_CONTROLLER_BIND
# (colon-separated; e.g. the checkout) bound at the same paths, then chroot into
# ROOTFS and run COMMAND from the same working directory. The network namespace is
# the caller's (the root one): the package index and the test underlay are reached.
# Host configuration directories are never bound in: the controller keeps its own
# /etc, so its package scripts cannot touch this machine's.
set -eu
root=$1
shift
# The script below is expanded by the inner shell, not here.
# shellcheck disable=SC2016
exec unshare --mount --propagation private /bin/sh -eu -c '
root=$1; cwd=$2; shift 2
bind() {
    case "$1" in
        /|/etc|/etc/*|/usr|/usr/*|/var|/var/lib|/var/lib/*|/boot|/boot/*|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*|/opt|/opt/*|/root|/bin|/sbin|/lib|/lib64)
            echo "controller-enter.sh: refusing to bind $1 into the controller" >&2; exit 2 ;;
    esac
    mkdir -p "$root$1"
    mount --rbind "$1" "$root$1"
}
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /tmp "$root/tmp"
old_ifs=$IFS; IFS=:
for dir in ${OVERLAY_FLANNEL_CONTROLLER_BIND:-}; do
    IFS=$old_ifs
    case "$dir" in ""|/tmp|/tmp/*) continue ;; esac
    bind "$dir"
done
IFS=$old_ifs
case "$cwd" in /tmp|/tmp/*) ;; *) [ -d "$root$cwd" ] && mountpoint -q "$root$cwd" || bind "$cwd" ;; esac
cp /etc/resolv.conf "$root/etc/resolv.conf"
exec chroot "$root" /usr/bin/env HOME=/root PATH="$(dirname "$1"):/usr/sbin:/usr/bin:/sbin:/bin" \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
' controller-enter "$root" "$(pwd)" "$@"
