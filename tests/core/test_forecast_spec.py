"""The spec's `forecast:` section: byte figures as numbers or quantities, "measure", and every mistake by field and line."""

from __future__ import annotations

import pytest

from livedrill.spec import SpecError, parse_spec

BASE = """\
name: t
cluster: lab
platform: {kind: kubevirt, kubeconfig: /tmp/k}
vms: [{namespace: banking, name: banking-core-vm}]
mode: {kind: targeted, target_node: node-2}
slo: {max_downtime_ms: 100, p99_latency_ms: 5}
"""
FORECAST = """\
forecast:
  dirty_rate_bytes_per_s: 8Mi
  working_set_bytes: 64Mi
  bandwidth_bytes_per_s: 1Gi
  allowed_downtime_ms: 300
"""


def test_no_section_means_no_forecast():
    assert parse_spec(BASE).forecast is None


def test_quantities_are_bytes():
    forecast = parse_spec(BASE + FORECAST).forecast
    assert (forecast.dirty_rate_bytes_per_s, forecast.working_set_bytes, forecast.bandwidth_bytes_per_s) == \
        (8 * 2**20, 64 * 2**20, 2**30)
    assert forecast.allowed_downtime_ms == 300 and forecast.disk_write_rate_bytes_per_s == 0


@pytest.mark.parametrize("rate, expected", [("measure", "measure"), ("0", 0.0), ("1500000", 1.5e6), ("2M", 2e6)])
def test_dirty_rate_is_a_figure_or_measure(rate, expected):
    spec = parse_spec(BASE + FORECAST.replace("8Mi", rate))
    assert spec.forecast.dirty_rate_bytes_per_s == expected


@pytest.mark.parametrize("touched, expected", [("measure", "measure"), ("96Mi", 96 * 2**20), ("0", 0.0)])
def test_touched_memory_is_a_figure_or_measure(touched, expected):
    spec = parse_spec(BASE + FORECAST + f"  touched_memory_bytes: {touched}\n  setup_s: 0.3\n")
    assert (spec.forecast.touched_memory_bytes, spec.forecast.setup_s) == (expected, 0.3)
    assert parse_spec(BASE + FORECAST).forecast.touched_memory_bytes is None  # not given: all memory counts


@pytest.mark.parametrize("mutation, path, line, words", [
    (("8Mi", "fast"), "forecast.dirty_rate_bytes_per_s", 8, "not a byte figure"),
    (("8Mi", "-8Mi"), "forecast.dirty_rate_bytes_per_s", 8, "0 or more"),
    (("64Mi", "0"), "forecast.working_set_bytes", 9, "greater than 0"),
    (("1Gi", "lots"), "forecast.bandwidth_bytes_per_s", 10, "not a byte figure"),
    (("allowed_downtime_ms: 300", "allowed_downtime_ms: -1"), "forecast.allowed_downtime_ms", 11, "greater than 0"),
    (("allowed_downtime_ms: 300", "max_downtime: 300"), "forecast.max_downtime", 11, "unknown field"),
    (("allowed_downtime_ms: 300", "measure_window_s: 120"), "forecast.measure_window_s", 11, "less than or equal to 60"),
    (("allowed_downtime_ms: 300", "touched_memory_bytes: most"), "forecast.touched_memory_bytes", 11, "not a byte figure"),
    (("allowed_downtime_ms: 300", "touched_memory_bytes: -1Mi"), "forecast.touched_memory_bytes", 11, "0 or more"),
    (("allowed_downtime_ms: 300", "touched_sample_pages: 5"), "forecast.touched_sample_pages", 11, "greater than or equal"),
    (("allowed_downtime_ms: 300", "setup_s: -0.5"), "forecast.setup_s", 11, "greater than or equal to 0"),
])
def test_each_problem_names_field_and_line(mutation, path, line, words):
    text = BASE + FORECAST.replace(*mutation)
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    problems = {p.path: p for p in err.value.problems}
    assert path in problems, problems
    assert problems[path].line == line
    assert words.lower() in problems[path].message.lower()
