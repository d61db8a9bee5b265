#!/bin/sh
# Two-arm create/destroy hook of the reference appliance (gwlbtun's calling convention):
#   nat.sh CREATE|DESTROY <ingress tun> <egress tun> <vpce-id>
# with EGRESS_DEV (the second interface), EGRESS_GW (the router behind it) and EGRESS_ROUTES (the
# destinations reached through it, space-separated CIDRs) in the environment.
# CREATE sends what arrives on the ingress tun for EGRESS_ROUTES out of EGRESS_DEV, masqueraded,
# and everything else back out of the egress tun (one-arm); replies coming back on EGRESS_DEV are
# un-NATed by conntrack and routed into the egress tun, so they return through the GWLB tunnel.
# Tables: 2000 + the ingress ifindex (outbound), 3000 + it (replies).
set -eu
action=$1 gwi=$2 gwo=$3
: "${EGRESS_DEV:?set EGRESS_DEV to the second interface}" "${EGRESS_GW:?set EGRESS_GW to its router}"
: "${EGRESS_ROUTES:?set EGRESS_ROUTES to the CIDRs behind the second interface}"

index=$(cat "/sys/class/net/$gwi/ifindex" 2>/dev/null || echo 0)
out=$((2000 + index)) back=$((3000 + index))

case "$action" in
CREATE)
    echo 1 > /proc/sys/net/ipv4/ip_forward
    for dev in all "$gwi" "$gwo" "$EGRESS_DEV"; do
        echo 0 > "/proc/sys/net/ipv4/conf/$dev/rp_filter"
    done
    ip link set "$gwi" up
    ip link set "$gwo" up
    ip rule add iif "$gwi" lookup "$out"
    ip route replace default dev "$gwo" table "$out"
    for net in $EGRESS_ROUTES; do
        ip route replace "$net" via "$EGRESS_GW" dev "$EGRESS_DEV" table "$out"
    done
    ip rule add iif "$EGRESS_DEV" lookup "$back"
    ip route replace default dev "$gwo" table "$back"
    iptables -t nat -C POSTROUTING -o "$EGRESS_DEV" -j MASQUERADE 2>/dev/null \
        || iptables -t nat -A POSTROUTING -o "$EGRESS_DEV" -j MASQUERADE
    ;;
DESTROY)
    while ip rule del iif "$gwi" 2>/dev/null; do :; done
    while ip rule del iif "$EGRESS_DEV" 2>/dev/null; do :; done
    ip route flush table "$out" 2>/dev/null || true
    ip route flush table "$back" 2>/dev/null || true
    iptables -t nat -D POSTROUTING -o "$EGRESS_DEV" -j MASQUERADE 2>/dev/null || true
    ;;
*)
    echo "usage: $0 CREATE|DESTROY <ingress> <egress> <vpce-id>" >&2
    exit 2
    ;;
esac
