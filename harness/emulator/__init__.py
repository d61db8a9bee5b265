"""The emulated GWLB forwarder: `core` is the pure data-plane logic, `daemon` runs it on sockets
and tun devices inside the testbed, `health` probes targets, `control` serves its state."""
