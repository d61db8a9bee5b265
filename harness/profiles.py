"""GWLB profiles: what differs between the clouds' Gateway Load Balancers, as frozen data.

The emulator, the topology loader and the checks take a `Profile` instead of AWS constants, so a
cloud is one more instance here rather than a branch in each module. `aws` is the default and
SPEC section 3 in full; `tencent` (SPEC 3.6) proves the split: the same three options under class
0x0167, a cookie word whose top 3 bits give the packet's direction (so the two directions of one
flow carry different header bytes), symmetric 3-tuple hashing always, and new flows spread over
all targets when none is healthy. docs/architecture.md cites the sources and the choices made.

`Stickiness` lives here because a profile may force it; `harness.topology` imports it from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harness import geneve

COOKIE_WORD_BITS = 32


class Stickiness(enum.Enum):
    """AWS target-group attribute `stickiness.type`."""

    FIVE_TUPLE = "five_tuple"
    THREE_TUPLE = "source_ip_dest_ip_proto"
    TWO_TUPLE = "source_ip_dest_ip"


class AllUnhealthy(enum.Enum):
    """Where a new flow goes when no eligible target is healthy."""

    PIN_RANDOM = "pin_random"
    """AWS: each new flow is pinned to a random target for its life."""
    SPREAD_ALL = "spread_all"
    """Tencent: "all dead means all alive", new flows are hashed over every target."""


class Direction(enum.IntEnum):
    """Which way a packet of a flow travels."""

    FROM_INITIATOR = 0
    TO_INITIATOR = 1


@dataclass(frozen=True)
class Profile:
    """One cloud's GWLB behaviour where it differs from the others."""

    name: str
    layout: geneve.OptionLayout
    direction_bits: int
    """Top bits of the 32-bit cookie word that carry the packet's direction (0: none)."""
    direction_values: tuple[int, int]
    """The direction field's value for packets from the flow's initiator, and towards it."""
    forced_stickiness: Stickiness | None
    all_unhealthy: AllUnhealthy

    def __post_init__(self) -> None:
        if not 0 <= self.direction_bits < COOKIE_WORD_BITS:
            raise ValueError(f"profile {self.name}: direction_bits {self.direction_bits}: expected 0..31")
        for value in self.direction_values:
            if not 0 <= value < 1 << self.direction_bits:
                raise ValueError(f"profile {self.name}: direction value {value} does not fit in "
                                 f"{self.direction_bits} bits")
        if self.direction_bits and len(set(self.direction_values)) != 2:
            raise ValueError(f"profile {self.name}: the two directions need distinct values, "
                             f"found {self.direction_values}")

    @property
    def cookie_bits(self) -> int:
        return COOKIE_WORD_BITS - self.direction_bits

    @property
    def directional(self) -> bool:
        """Whether the two directions of a flow carry different header bytes."""
        return self.direction_bits > 0

    def cookie_word(self, cookie: int, direction: Direction) -> int:
        """The 32-bit value of the cookie option on a packet of `cookie`'s flow going `direction`."""
        if not 0 <= cookie < 1 << self.cookie_bits:
            raise ValueError(f"profile {self.name}: cookie {cookie:#x} does not fit in {self.cookie_bits} bits")
        return self.direction_values[direction] << self.cookie_bits | cookie

    def split_cookie_word(self, word: int) -> tuple[int, int]:
        """(direction field, cookie) of a received cookie word."""
        return word >> self.cookie_bits, word & ((1 << self.cookie_bits) - 1)

    def header(self, protocol: int, eni_id: int, attachment_id: int, cookie: int, direction: Direction) -> bytes:
        """The GENEVE header the GWLB puts on a packet of this flow going `direction`."""
        meta = geneve.AwsMetadata(eni_id, attachment_id, self.cookie_word(cookie, direction))
        return geneve.aws_header(protocol, meta, self.layout).encode()

    def metadata(self, header: geneve.GeneveHeader) -> geneve.AwsMetadata:
        """The profile's three options of a received header (`cookie` is the whole word); raises
        GeneveError naming the missing or malformed option."""
        return geneve.AwsMetadata.from_header(header, self.layout)

    def stickiness(self, requested: Stickiness | None) -> Stickiness:
        """The stickiness a load balancer of this profile uses when `requested` (None: not set);
        ValueError if the profile cannot do what is requested."""
        if self.forced_stickiness is None:
            return requested or Stickiness.FIVE_TUPLE
        if requested not in (None, self.forced_stickiness):
            raise ValueError(f"profile {self.name} always hashes {self.forced_stickiness.value}; "
                             f"{requested.value} is not available")  # type: ignore[union-attr]
        return self.forced_stickiness


AWS = Profile(
    name="aws",
    layout=geneve.AWS_LAYOUT,
    direction_bits=0,
    direction_values=(0, 0),
    forced_stickiness=None,
    all_unhealthy=AllUnhealthy.PIN_RANDOM,
)
TENCENT = Profile(
    name="tencent",
    layout=geneve.OptionLayout("Tencent", 0x0167),
    direction_bits=3,
    direction_values=(0, 1),
    forced_stickiness=Stickiness.THREE_TUPLE,
    all_unhealthy=AllUnhealthy.SPREAD_ALL,
)
PROFILES = {profile.name: profile for profile in (AWS, TENCENT)}
DEFAULT = AWS


def get_profile(name: str) -> Profile:
    """The profile called `name`; ValueError listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}") from None
