// The guest's /init (busybox sh as pid 1) and its power-button handler. The kernel
// command line configures it: vgrid.ip=ADDR/PREFIX, vgrid.gw=ADDR, vgrid.name=NAME,
// vgrid.overlay=ADDR (its overlay address: a /32 it sends from), vgrid.hosts=N=A,...
// (terminal names for /etc/hosts),
// vgrid.disks=N (wait for N virtio disks), vgrid.stamp=TEXT (write TEXT over the
// start of its first disk),
// vgrid.acpi=off (ignore the power button: a guest that does not cooperate),
// vgrid.exit=SECONDS (power off by itself after that long, for tests), and
// vgrid.reboot=SECONDS (reboot by itself after that long, for tests). While it runs,
// lines "hosts N=A,..." on the virtio port org.vgrid.names replace its terminal names
// (a link made after it booted; the qemu driver's setNames).

/** The line the guest prints on its console when its service runs. */
export const READY_MARK = 'vgrid-guest: ready'

export const INIT_SCRIPT = `#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /tmp /run
for m in $(cat /etc/vgrid/modules); do
  insmod /lib/modules/$m.ko || echo "vgrid-guest: insmod $m failed"
done
arg () { for a in $(cat /proc/cmdline); do case "$a" in "$1="*) echo "\${a#*=}";; esac; done; }
# volumes: what each virtio disk starts with; vgrid.stamp=TEXT writes TEXT over the
# start of the first one (so a test sees a disk as the guest left it, on another node)
n=0; want=$(arg vgrid.disks)
while [ -n "$want" ] && [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$want" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
for d in /sys/block/vd*; do
  [ -e "$d" ] || continue
  echo "vgrid-guest: disk \${d##*/} [$(head -c 64 /dev/\${d##*/} | tr -cd 'A-Za-z0-9._-')]"
done
STAMP=$(arg vgrid.stamp)
if [ -n "$STAMP" ] && [ -e /dev/vda ]; then
  { printf '%s' "$STAMP"; head -c 64 /dev/zero; } | head -c 64 | dd of=/dev/vda bs=64 count=1 conv=notrunc,fsync 2>/dev/null && sync && echo "vgrid-guest: stamped vda [$STAMP]"
fi
IP=$(arg vgrid.ip); GW=$(arg vgrid.gw); NAME=$(arg vgrid.name); OVERLAY=$(arg vgrid.overlay)
ip link set lo up
printf '127.0.0.1\\tlocalhost\\n' > /etc/hosts
for h in $(arg vgrid.hosts | tr ',' ' '); do
  printf '%s\\t%s\\n' "\${h#*=}" "\${h%%=*}" >> /etc/hosts
  echo "vgrid-guest: terminal \${h%%=*} is \${h#*=}"
done
# terminal names told while it runs: the port reads end-of-file while nobody on the
# node holds it open, and blocks for the next line while someone does
NAMES=
for p in /sys/class/virtio-ports/*; do [ "$(cat "$p/name" 2>/dev/null)" = org.vgrid.names ] && NAMES=/dev/\${p##*/}; done
if [ -n "$NAMES" ]; then
  ( while :; do
      while read -r kind list; do
        [ "$kind" = hosts ] || continue
        { printf '127.0.0.1\tlocalhost\n'; for h in $(echo "$list" | tr ',' ' '); do printf '%s\t%s\n' "\${h#*=}" "\${h%%=*}"; done; } > /etc/hosts.new && mv /etc/hosts.new /etc/hosts
        echo "vgrid-guest: terminals now \${list:-none}"
      done < "$NAMES"
      sleep 1
    done ) &
fi
if [ -n "$IP" ]; then
  n=0
  while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
  ip addr add "$IP" dev eth0 && ip link set eth0 up || echo "vgrid-guest: no eth0 for $IP"
  if [ -n "$OVERLAY" ]; then
    ip addr add "$OVERLAY/32" dev eth0
    [ -n "$GW" ] && ip route add default via "$GW" src "$OVERLAY"
  else
    [ -n "$GW" ] && ip route add default via "$GW"
  fi
fi
# the ACPI power button (QMP system_powerdown): any event on its input device means
# "shut down"; simpler and surer than a daemon parsing events
if [ "$(arg vgrid.acpi)" != off ]; then
  for e in /sys/class/input/event*; do
    if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
      # evdev answers reads shorter than one event (24 bytes) with EINVAL
      ( dd if="/dev/input/\${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null && /etc/acpi/power-button ) &
    fi
  done
fi
mkdir -p /www
echo "vgrid guest \${NAME:-unnamed} at \${OVERLAY:-\${IP:-no address}}" > /www/index.html
httpd -p 80 -h /www
echo "${READY_MARK} name=\${NAME:-unnamed} ip=\${IP:-none}"
X=$(arg vgrid.exit)
if [ -n "$X" ]; then sleep "$X"; echo "vgrid-guest: powering off"; poweroff -f; fi
X=$(arg vgrid.reboot)
if [ -n "$X" ]; then sleep "$X"; echo "vgrid-guest: rebooting"; reboot -f; fi
while :; do sleep 3600; done
`

// what the guest runs on the ACPI power button
export const POWER_BUTTON_SCRIPT = `#!/bin/sh
echo "vgrid-guest: power button, shutting down" > /dev/console
sync
poweroff -f
`
