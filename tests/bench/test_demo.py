"""xrec demo's timing: median with the p10-p90 spread, a busy machine detected and said, no deleted path printed."""
from __future__ import annotations

import re
import time

import pytest

from xrec.bench import demo
from xrec.bench.timing import summarize

QUIET = {"loadavg_start": [0.1, 0.2, 0.3], "other_busy_frac": 0.02, "steal_frac": 0.0, "other_processes_cpu_s": []}


def _timings(load, cpus=2, eager=(10.0, 11.0, 30.0), xrec=(1.0, 1.0, 1.1)):
    rows = [{"batch": 64, "pytorch-eager": summarize([t / 1e3 for t in eager]),
             "xrec-cpu": summarize([t / 1e3 for t in xrec])}]
    return demo.DemoTimings(rows, load, cpus)


def test_a_quiet_machine_gives_no_busy_reason():
    assert demo.busy_reasons(QUIET, cpus=2) == []


@pytest.mark.parametrize("change,words", [
    ({"loadavg_start": [3.9, 2.0, 1.0]}, "load average 3.9 on 2 CPU(s)"),
    ({"other_busy_frac": 0.66, "other_processes_cpu_s": [["cc1plus", 3.5], ["idle", 0]]},
     "other processes used 66% of the CPU time while timing (cc1plus 3.5 s)"),
    ({"steal_frac": 0.12}, "steal time 12%"),
])
def test_each_sign_of_a_busy_machine_is_named_with_its_number(change, words):
    reasons = demo.busy_reasons({**QUIET, **change}, cpus=2)
    assert len(reasons) == 1 and words in reasons[0], reasons


def test_speed_table_shows_median_and_p10_p90_and_says_busy():
    text = "\n".join(demo.format_speed(_timings({**QUIET, "steal_frac": 0.3})))
    # eager samples 10, 11, 30 ms: median 11, p10 10.2, p90 26.2 (linear interpolation)
    assert "11.000 (10.200-26.200)" in text
    assert "machine    BUSY: steal time 30%" in text and "not representative" in text
    assert "pytorch-eager at batch 64" in text        # its spread (26.2 / 10.2) is wide
    assert re.search(r"\b11\.00x", text)               # speedup of medians: 11 / 1


def test_speed_table_on_a_quiet_machine_says_quiet_and_not_busy():
    text = "\n".join(demo.format_speed(_timings(QUIET, eager=(10.0, 10.1, 10.2))))
    assert "machine    quiet (2 CPU(s), load average 0.1" in text and "BUSY" not in text
    assert "spread" not in text


def test_time_systems_interleaves_samples_and_records_the_load():
    order = []

    def calls(batch):
        return {"a": lambda: order.append("a"), "b": lambda: (order.append("b"), time.sleep(0.002))}
    t = demo.time_systems(calls, [1, 8], reps=3)
    assert [r["batch"] for r in t.rows] == [1, 8]
    assert order[:8] == ["a", "b"] * 4                  # one warm-up each, then interleaved rounds
    assert t.rows[0]["a"].n == 3 and t.rows[0]["b"].p10_ms >= 1.5
    assert "loadavg_start" in t.load and t.cpus >= 1


def test_demo_prints_spread_and_machine_state_and_no_artifact_path(capsys):
    from xrec.cli import main
    rc = main(["demo", "--target", "reference", "--max-rows", "300"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "median (p10-p90)" in out and re.search(r"^machine    (quiet|BUSY)", out, re.M)
    assert ".xrec" not in out.replace("dlrm-small.xrec", ""), out   # the temporary artifact's path is not shown
    assert "removed on exit" in out
