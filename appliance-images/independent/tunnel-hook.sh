#!/bin/sh
# Routes one GWLB endpoint's tun pair, the way gwlbtun's create hook does:
#   tunnel-hook.sh create|destroy INGRESS EGRESS ENI_ID TABLE
# Everything that arrives on INGRESS (decapsulated GENEVE) is routed by this namespace's kernel
# out of EGRESS, where gwlbtund reads it and sends it back to the GWLB. A vendor's firewall or NAT
# rules would go here too.
set -eu
[ $# -eq 5 ] || { echo "usage: $0 create|destroy INGRESS EGRESS ENI_ID TABLE" >&2; exit 2; }
action=$1 ingress=$2 egress=$3 table=$5

drop_rules() {
    while ip -4 rule del iif "$ingress" 2>/dev/null; do :; done
    while ip -6 rule del iif "$ingress" 2>/dev/null; do :; done
}

case "$action" in
create)
    for dev in "$ingress" "$egress"; do
        # No IPv6 link-local address; what the kernel still sends (MLD reports) has no flow and is dropped.
        ip link set dev "$dev" addrgenmode none
        ip link set dev "$dev" mtu 8500 txqueuelen 10000 up
    done
    sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$ingress.rp_filter=0"
    drop_rules
    ip -4 route flush table "$table" 2>/dev/null || true
    ip -6 route flush table "$table" 2>/dev/null || true
    ip -4 route replace default dev "$egress" table "$table"
    ip -6 route replace default dev "$egress" table "$table"
    ip -4 rule add iif "$ingress" lookup "$table" pref 1000
    ip -6 rule add iif "$ingress" lookup "$table" pref 1000
    ;;
destroy)
    drop_rules
    ip -4 route flush table "$table" 2>/dev/null || true
    ip -6 route flush table "$table" 2>/dev/null || true
    ;;
*)
    echo "$0: unknown action '$action' (create or destroy)" >&2
    exit 2
    ;;
esac
