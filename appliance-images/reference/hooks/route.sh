#!/bin/sh
# Create/destroy hook of the reference appliance (gwlbtun's calling convention):
#   route.sh CREATE|DESTROY <ingress tun> <egress tun> <vpce-id>
# CREATE routes everything arriving on the ingress tun out of the egress tun with policy routing,
# IPv4 and IPv6, in a table of its own (1000 + the ingress ifindex). DESTROY removes those rules
# and routes; the global sysctls stay because other tun pairs still need them.
# Sysctls that cannot be written (read-only /proc/sys in a container) only warn: set them on the
# container instead.
set -eu
action=$1 gwi=$2 gwo=$3

set_sysctl() {
    [ "$(cat "/proc/sys/$1" 2>/dev/null)" = "$2" ] && return 0
    echo "$2" 2>/dev/null > "/proc/sys/$1" || echo "route.sh: cannot set $1=$2" >&2
}

table() {
    echo $((1000 + $(cat "/sys/class/net/$1/ifindex")))
}

case "$action" in
CREATE)
    set_sysctl net/ipv4/ip_forward 1
    set_sysctl net/ipv6/conf/all/forwarding 1
    for dev in all "$gwi" "$gwo"; do
        set_sysctl "net/ipv4/conf/$dev/rp_filter" 0
    done
    ip link set "$gwi" up
    ip link set "$gwo" up
    t=$(table "$gwi")
    ip rule add iif "$gwi" lookup "$t"
    ip route replace default dev "$gwo" table "$t"
    ip -6 rule add iif "$gwi" lookup "$t" || echo "route.sh: no IPv6 policy rule for $gwi" >&2
    ip -6 route replace default dev "$gwo" table "$t" || echo "route.sh: no IPv6 route for $gwo" >&2
    ;;
DESTROY)
    while ip rule del iif "$gwi" 2>/dev/null; do :; done
    while ip -6 rule del iif "$gwi" 2>/dev/null; do :; done
    if [ -e "/sys/class/net/$gwi/ifindex" ]; then
        t=$(table "$gwi")
        ip route flush table "$t" 2>/dev/null || true
        ip -6 route flush table "$t" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 CREATE|DESTROY <ingress> <egress> <vpce-id>" >&2
    exit 2
    ;;
esac
