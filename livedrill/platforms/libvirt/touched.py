"""How much of a running guest's memory holds data, sampled without migrating it (the forecast's first round).

QEMU sends a page that is all zeros as a header of a few bytes, so a pre-copy's first round costs the pages
that hold data. libvirt's virDomainMemoryPeek(VIR_MEMORY_PHYSICAL) reads guest-physical memory (QEMU's
`pmemsave`, about 4 ms a call on the lab); one random 4 KiB page is read from each of N equal strata of the
guest's RAM and only tested for being all zeros: the bytes are never kept, logged or returned.

Guest-physical RAM is not one range from 0 on every machine type. QEMU places RAM below 4 GiB up to a limit and
the rest from 4 GiB: i440fx ("pc") keeps all of it low below 3.5 GiB (0xe0000000), else 3 GiB low (gigabyte
alignment, machine types since 1.7); q35 keeps all of it low below 2.75 GiB (0xb0000000), else 2 GiB low
(hw/i386/pc_piix.c, pc_q35.c). An unknown machine type is not sampled: the forecast then counts all memory.
"""

from __future__ import annotations

import random

PAGE = 4096
ZERO_PAGE = bytes(PAGE)
FOUR_GIB = 4 * 1024**3
# (machine type prefix, RAM size from which it splits, RAM kept below 4 GiB when it splits)
_SPLITS = (("pc-q35", 0xB0000000, 0x80000000), ("q35", 0xB0000000, 0x80000000),
           ("pc-i440fx", 0xE0000000, 0xC0000000), ("pc", 0xE0000000, 0xC0000000))


def guest_ram_ranges(memory_bytes: int, machine: str) -> list[tuple[int, int]] | None:
    """Guest-physical [start, end) ranges of the guest's RAM, or None for a machine type whose layout is not known."""
    for prefix, split_at, low in _SPLITS:
        if machine == prefix or machine.startswith(prefix + "-"):
            if memory_bytes < split_at:
                return [(0, memory_bytes)]
            return [(0, low), (FOUR_GIB, FOUR_GIB + memory_bytes - low)]
    return None


def sample_addresses(ranges: list[tuple[int, int]], pages: int, rng: random.Random) -> list[int]:
    """One page-aligned address drawn at random from each of `pages` equal strata of the RAM (stratified: every
    part of memory is looked at, which random draws over the whole would not guarantee)."""
    total_pages = sum((end - start) // PAGE for start, end in ranges)
    pages = min(pages, total_pages)
    addresses = []
    for stratum in range(pages):
        first, last = stratum * total_pages // pages, (stratum + 1) * total_pages // pages
        index = rng.randrange(first, last)
        for start, end in ranges:
            span = (end - start) // PAGE
            if index < span:
                addresses.append(start + index * PAGE)
                break
            index -= span
    return addresses


def touched_estimate(zero_pages: int, sampled: int, memory_bytes: int) -> float:
    """Bytes of memory holding data: the sampled share of pages that are not all zeros, of all memory."""
    if sampled <= 0:
        raise ValueError("no page was sampled")
    return memory_bytes * (sampled - zero_pages) / sampled
