"""Sampling a guest's touched memory: where its RAM is, where the samples fall, what they add up to."""

from __future__ import annotations

import random

import pytest

from livedrill.platforms.libvirt.touched import PAGE, guest_ram_ranges, sample_addresses, touched_estimate

MI, GI = 1024**2, 1024**3


@pytest.mark.parametrize("memory, machine, ranges", [
    (256 * MI, "pc-i440fx-7.2", [(0, 256 * MI)]),
    (256 * MI, "pc", [(0, 256 * MI)]),
    (3 * GI, "pc-i440fx-7.2", [(0, 3 * GI)]),  # below 3.5 GiB: all low
    (8 * GI, "pc-i440fx-7.2", [(0, 3 * GI), (4 * GI, 9 * GI)]),  # 3 GiB low, 5 GiB from 4 GiB
    (2 * GI, "pc-q35-7.2", [(0, 2 * GI)]),
    (3 * GI, "pc-q35-7.2", [(0, 2 * GI), (4 * GI, 5 * GI)]),  # q35 splits from 2.75 GiB, keeping 2 GiB low
    (64 * GI, "q35", [(0, 2 * GI), (4 * GI, 66 * GI)]),
    (256 * MI, "virt-7.2", None),  # an ARM machine: layout not known here, not sampled
    (256 * MI, "pcx", None),
])
def test_guest_ram_ranges(memory, machine, ranges):
    assert guest_ram_ranges(memory, machine) == ranges


def test_samples_fall_in_ram_one_per_stratum_page_aligned():
    ranges = [(0, 3 * GI), (4 * GI, 9 * GI)]
    addresses = sample_addresses(ranges, 256, random.Random(7))
    assert len(addresses) == 256 and all(a % PAGE == 0 for a in addresses)
    assert all(any(start <= a < end for start, end in ranges) for a in addresses)
    assert addresses == sorted(addresses)  # strata in order: one in each 1/256 of the RAM
    stratum = 8 * GI // 256
    low = [a for a in addresses if a < 3 * GI]
    assert len(low) == 3 * GI // stratum  # the low range gets its share, no more
    assert sample_addresses([(0, 10 * PAGE)], 256, random.Random(1)) == [i * PAGE for i in range(10)]  # every page


@pytest.mark.parametrize("zero, sampled, memory, touched", [
    (0, 256, 256 * MI, 256 * MI), (256, 256, 256 * MI, 0.0), (172, 256, 256 * MI, 84 * MI), (1, 4, 1 * GI, 0.75 * GI),
])
def test_touched_estimate(zero, sampled, memory, touched):
    assert touched_estimate(zero, sampled, memory) == pytest.approx(touched)


def test_nothing_sampled_is_an_error_not_a_figure():
    with pytest.raises(ValueError, match="no page"):
        touched_estimate(0, 0, MI)
