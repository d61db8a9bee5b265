"""Reference GENEVE appliance: a small, correct tunnel handler in the spirit of AWS's gwlbtun.

Packets really traverse the appliance's kernel: GENEVE arrives on UDP 6081, the inner packet is
written to a per-endpoint ingress tun, the kernel routes it (see hooks/route.sh) to the egress tun,
and what comes out is re-encapsulated with the header cached for its flow and sent back to the GWLB.
Standalone on purpose (Python stdlib only) so it runs unchanged in a minimal container.

Modules: `geneve` wire format, `flows` flow keys and cache, `tunnels` tun pairs and the hook,
`faults` named misbehaviours, `stats` counters and drop reasons, `health` HTTP endpoint,
`datapath` the event loop tying them together, `cli` the command line.
"""
