#!/bin/sh
# Configures the shared Debian 12 root filesystem of the test hosts.
# Runs inside a chroot of the freshly debootstrapped tree, after the package
# install.  Its text is part of the image cache key: any change here rebuilds
# the image.  Per-host settings (hostname, machine-id, ssh host keys,
# authorized_keys, docker cgroup-parent) are written by the harness into each
# host's own overlay, not here.
set -eu

# --- generic cleanup -------------------------------------------------------
# Per-host identity must not live in the shared image.
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -sf /etc/machine-id /var/lib/dbus/machine-id
rm -f /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# hosts have no network: no apt sources that would time out
: > /etc/apt/sources.list
rm -f /etc/apt/sources.list.d/*

# pam_env in every ssh session reads it (else "Unable to open env file" in the journal)
printf 'LANG=C.UTF-8\n' > /etc/default/locale

# --- sshd: key auth for root only ------------------------------------------
mkdir -p /etc/ssh/sshd_config.d /root/.ssh
chmod 700 /root/.ssh
cat > /etc/ssh/sshd_config.d/10-test-cluster.conf <<'CONF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
CONF

# --- units that make no sense (or fail) in an offline nspawn host -----------
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer dpkg-db-backup.timer systemd-timesyncd.service \
         console-getty.service getty@.service container-getty@.service serial-getty@.service \
         systemd-networkd-wait-online.service systemd-firstboot.service \
         systemd-hwdb-update.service ldconfig.service; do
    ln -sf /dev/null "/etc/systemd/system/$u"
done

# --- API file systems: nspawn mounts them for a host that shares the machine's
# network, but each test host has a network namespace of its own:
#  * cgroup v1 controllers are read-only -> docker run fails (mkdir .../cpuset/docker)
#  * /proc/sys/net is read-only -> dockerd cannot enable ip_forward, sysctl fails
#  * /sys is the machine's sysfs -> /sys/class/net lists the machine's interfaces
#    (ansible facts read it), not the host's
cat > /usr/local/sbin/test-cluster-mounts <<'SCRIPT'
#!/bin/sh
# Make the host's API file systems fit its own network namespace (see image-setup.sh).
set -u
rc=0
while read -r _id _pid _mm _root mp _opts rest; do
    fstype=$(printf '%s\n' "$rest" | sed -n 's/.* - \([^ ]*\) .*/\1/p')
    [ "$fstype" = cgroup ] || continue
    case "$mp" in
        /sys/fs/cgroup/systemd|/sys/fs/cgroup/unified) continue ;;
    esac
    mount -o remount,bind,rw "$mp" || rc=1
done < /proc/self/mountinfo
mounted() { awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo; }
# /proc/sys/net belongs to this host's own netns: make it writable
if ! mounted /proc/sys/net; then
    { mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net; } || rc=1
fi
# a sysfs instance mounted here is filtered by this netns: bind its net views over /sys
if ! mounted /sys/class/net; then
    d=$(mktemp -d /run/test-cluster-sysfs.XXXXXX)
    if mount -t sysfs sysfs "$d"; then
        mount --bind "$d/class/net" /sys/class/net || rc=1
        mount --bind "$d/devices/virtual/net" /sys/devices/virtual/net || rc=1
        umount -l "$d"
    else
        rc=1
    fi
    rmdir "$d"
fi
exit $rc
SCRIPT
chmod 755 /usr/local/sbin/test-cluster-mounts
cat > /etc/systemd/system/test-cluster-mounts.service <<'UNIT'
[Unit]
Description=Fit API file systems to the host's own netns (test cluster)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=sysinit.target systemd-sysctl.service containerd.service docker.service ssh.service
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/test-cluster-mounts

[Install]
WantedBy=sysinit.target
UNIT

# --- docker -----------------------------------------------------------------
mkdir -p /etc/systemd/system/containerd.service.d /etc/systemd/system/docker.service.d
cat > /etc/systemd/system/containerd.service.d/10-test-cluster.conf <<'UNIT'
[Unit]
Requires=test-cluster-mounts.service
After=test-cluster-mounts.service
[Service]
# no kernel modules inside the host
ExecStartPre=
UNIT
cat > /etc/systemd/system/docker.service.d/10-test-cluster.conf <<'UNIT'
[Unit]
Requires=test-cluster-mounts.service
After=test-cluster-mounts.service
UNIT

# busybox image for test containers, imported once per host (its own /var/lib/docker)
cat > /usr/local/sbin/load-test-images <<'SCRIPT'
#!/bin/sh
set -eu
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
    docker import --change 'CMD ["sh"]' /usr/local/share/test-cluster/busybox.tar busybox:latest
fi
SCRIPT
chmod 755 /usr/local/sbin/load-test-images
cat > /etc/systemd/system/load-test-images.service <<'UNIT'
[Unit]
Description=Import the busybox test image into docker (test cluster)
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/load-test-images

[Install]
WantedBy=multi-user.target
UNIT

systemctl enable ssh.service containerd.service docker.service \
    test-cluster-mounts.service load-test-images.service
systemctl set-default multi-user.target
# masked units must not leave dangling .wants links behind
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer dpkg-db-backup.timer getty@tty1.service; do
    rm -f /etc/systemd/system/*.wants/$u
done

# journald: keep logs in memory only, small
mkdir -p /etc/systemd/journald.conf.d
cat > /etc/systemd/journald.conf.d/10-test-cluster.conf <<'CONF'
[Journal]
Storage=volatile
RuntimeMaxUse=16M
CONF
