#!/bin/sh
# PID 1 of the test's private pid/mount/net/uts/ipc/cgroup namespaces (see manager.rs):
# builds a private view of the system so that nothing the manager does reaches the host,
# puts the built dynproxy where the shipped units expect it and the test's resolv.conf in
# place, then becomes the machine's own systemd.  $1: the test's work directory.
set -e
WORK=$1
UNIT_PATH=$WORK/units
mount --make-rprivate /
if [ -e "$WORK/packaged" ]; then
  case $WORK in /usr/*|/etc/*|/var/*)   # an overlay's changes cannot lie inside it
    echo "pid1.sh: the work directory $WORK must not be under /usr, /etc or /var" >&2; exit 1;;
  esac
  # A scratch system for installing packages (tests/package): /usr, /etc and /var writable
  # in this namespace only (overlays whose changes stay in the work directory), the
  # system's unit directories empty, searched after the base units; no dynproxy but what a
  # package brings.
  for dir in usr etc var; do
    mkdir -p "$WORK/overlay/$dir/changes" "$WORK/overlay/$dir/work"
    mount -t overlay overlay \
      -o "lowerdir=/$dir,upperdir=$WORK/overlay/$dir/changes,workdir=$WORK/overlay/$dir/work" "/$dir"
  done
  for dir in /etc/systemd/system /usr/lib/systemd/system; do mount -t tmpfs tmpfs "$dir"; done
  UNIT_PATH=$WORK/units:/etc/systemd/system:/usr/lib/systemd/system
fi
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run        # manager state, journal, sockets
mount -t sysfs -o ro sysfs /sys                           # sysfs of the new network namespace
mount -t cgroup2 cgroup2 /sys/fs/cgroup                   # rooted at our cgroup namespace
mount --bind /proc/sys /proc/sys; mount -o remount,bind,ro /proc/sys   # PID 1 raises sysctls
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
# a private /tmp and /var/tmp: PrivateTmp= makes each session's directories there, and they
# must not reach the host's.  The work directory may lie under /tmp: it is carried across.
mkdir -p /run/.work; mount --bind "$WORK" /run/.work
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mkdir -p "$WORK"; mount --move /run/.work "$WORK"; rmdir /run/.work
# a private /dev, so /dev/log and /dev/console never reach the host's
mkdir -p /run/.hostdev; mount --bind /dev /run/.hostdev
mount -t tmpfs -o mode=755,nosuid,size=1m tmpfs /dev
for n in null zero full random urandom tty; do touch /dev/$n; mount --bind /run/.hostdev/$n /dev/$n; done
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts; ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
ln -s /proc/self/fd /dev/fd
touch /dev/console; mount --bind /dev/null /dev/console
umount -l /run/.hostdev; rmdir /run/.hostdev
# what the test installs: the binary at the path of the shipped units, its DNS settings
if [ -e "$WORK/dynproxy" ]; then
  mount -t tmpfs -o mode=755 tmpfs /usr/local/bin
  cp "$WORK/dynproxy" /usr/local/bin/dynproxy
  if [ -e "$WORK/probe" ]; then cp "$WORK/probe" /usr/local/bin/probe; fi    # the tests' probe
fi
resolv=$(readlink -f /etc/resolv.conf)
mkdir -p "$(dirname "$resolv")"; [ -e "$resolv" ] || touch "$resolv"
mount --bind "$WORK/resolv.conf" "$resolv"
# the system user the package creates (units/sysusers.d/dynproxy.conf), in copies of the
# host's user and group files: the host's own are never touched
if [ ! -e "$WORK/packaged" ] && ! getent passwd dynproxy >/dev/null; then
  id=999; while getent passwd $id >/dev/null || getent group $id >/dev/null; do id=$((id - 1)); done
  for db in passwd group; do cp /etc/$db /run/.$db; done
  echo "dynproxy:x:$id:$id:dynproxy sessions:/:/usr/sbin/nologin" >>/run/.passwd
  echo "dynproxy:x:$id:" >>/run/.group
  for db in passwd group; do mount --bind /run/.$db /etc/$db; done
fi
ip link set lo up
hostname dynproxy-test
exec env -i container=dynproxy-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
     SYSTEMD_UNIT_PATH="$UNIT_PATH" \
     /lib/systemd/systemd --system --unit=test.target --log-target=console --show-status=no
