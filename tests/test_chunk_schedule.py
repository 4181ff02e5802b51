"""Codec chunk schedules: a small first chunk, then larger ones, with the same audio as one frame per
call; the Qwen3-TTS manifest names its schedule, and the bench compares schedules."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from voxport.errors import InputError
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

TEXT = "The old lighthouse keeper watched the storm roll in tonight."


@pytest.fixture(scope="module")
def rt(qwen_dir):
    return Runtime(qwen_dir, dtype="q4")


def test_a_schedule_changes_the_calls_not_the_audio(rt):
    kw = dict(max_frames=24, sampling=Sampling(0.9, 50), seed=7)
    one = Speech(rt, TEXT, chunk_frames=1, **kw)
    ref = list(one)
    grown = Speech(rt, TEXT, chunk_frames=(1, 2, 4), **kw)
    chunks = list(grown)
    frames = len(ref)
    assert frames == 24  # no stop frame in these 24: the schedule is seen whole
    assert [c.shape[0] // rt.rt["frame_size"] for c in chunks] == [1, 2, 4, 4, 4, 4, 4, 1]
    assert grown.stats["codec_calls"] == 8 and one.stats["codec_calls"] == 24
    # the streaming codec carries its state across calls: chunking moves float rounding only
    np.testing.assert_allclose(np.concatenate(chunks), np.concatenate(ref), atol=2e-5)
    with pytest.raises(InputError, match="chunk size must be >= 1 frame"):
        iter(Speech(rt, TEXT, chunk_frames=(1, 0)))


def test_the_manifest_names_the_default_schedule(qwen_dir, rt):
    schedule = json.loads((qwen_dir / "manifest.json").read_text())["runtime"]["codec_stream"]["chunk_schedule"]
    assert schedule[0] == 1 and schedule == sorted(schedule)
    speech = Speech(rt, TEXT, max_frames=4)
    list(speech)
    assert speech.stats["chunk_frames"] == schedule


def test_the_bench_compares_schedules_on_the_same_codes(qwen_dir):
    from voxport.bench.chunk_schedule import measure, table

    result = measure(qwen_dir, dtype="q4", frames=8, repeats=1, threads=1, schedules={"1": (1,), "1,4": (1, 4)})
    rows = {r["schedule"]: r for r in result["rows"]}
    assert rows["1"]["frames"] == rows["1,4"]["frames"] == 8
    assert all(r["first_audio_ms"] > 0 and r["rtf"] > 0 and r["stall_ms"] >= 0 for r in rows.values())
    assert table(result).count("\n") == 3


def test_the_bench_decodes_beside_an_engine_and_refuses_an_unknown_mode(qwen_dir):
    from voxport.bench.chunk_schedule import measure

    result = measure(qwen_dir, dtype="q4", frames=8, repeats=1, threads=1, schedules={"1,4": (1, 4)},
                     modes=["serial:1", "engine:1"])
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"serial:1", "engine:1"}
    assert rows["serial:1"]["frames"] == rows["engine:1"]["frames"] == 8
    assert all(r["first_audio_ms"] > 0 and r["rtf"] > 0 for r in rows.values())
    with pytest.raises(InputError, match="mode 'pipe:1': expected serial or engine"):
        measure(qwen_dir, modes=["serial", "pipe:1"])


def test_modes_split_threads_between_the_frame_and_the_codec(qwen_dir):
    from voxport.bench.chunk_schedule import parse_mode

    assert parse_mode("engine:2+1", 2) == ("engine", 2, 1)
    assert parse_mode("serial", 2) == ("serial", 2, 2) and parse_mode("engine:1", 2) == ("engine", 1, 1)
    for bad in ("engine:1+0", "engine:1+1+1", "serial:+1", "serial:2+"):
        with pytest.raises(InputError, match=re.escape(f"mode {bad!r}: expected serial or engine")):
            parse_mode(bad, 2)
    # the codec's session gets its own count, every other session the runtime's
    rt = Runtime(qwen_dir, threads=2, dtype="q4", codec_threads=1)
    rt.load_streaming()
    codec = rt.rt["codec_stream"]["graph"]
    threads = {g: s.get_session_options().intra_op_num_threads for g, s in rt.graphs._sessions.items()}
    assert threads.pop(codec) == 1 and set(threads.values()) == {2}, threads


def test_rows_say_how_busy_the_machine_was(qwen_dir):
    from voxport.bench.chunk_schedule import measure

    result = measure(qwen_dir, dtype="q4", frames=4, repeats=2, threads=1, schedules={"1,4": (1, 4)},
                     modes=["engine:1+1"])
    (row,) = result["rows"]
    assert len(row["runs"]) == 2 and row["best_rtf"] == min(r["rtf"] for r in row["runs"]) <= row["rtf"]
    assert all(r["other_cores"] >= 0 for r in row["runs"])


def test_a_chunk_schedule_as_typed():
    """The one parser of "1,4" (speak and serve's --chunk-frames, the benchmarks' schedules)."""
    from voxport.runtime.stream import parse_chunk_frames

    assert parse_chunk_frames("1,4,8") == (1, 4, 8) and parse_chunk_frames(" 2, 4 ") == (2, 4)
    assert parse_chunk_frames("3") == (3,)
    for bad in ("1,0", "", "1,,2", "-1", "1.5", "\u00b2", "4,"):
        with pytest.raises(InputError, match=re.escape(f"a schedule must be frame counts >= 1 separated by commas "
                                                       f"(e.g. 1,4), got {bad!r}")):
            parse_chunk_frames(bad, "a schedule")
