"""The batch scheduler (voxport/runtime/batch.py): streams joining and leaving a batch of 4 slots
mid-way each get the codes they have alone with the same seed; cancel frees a slot within a frame;
the engine (the scheduler in a thread) frees a cancelled stream's row and survives a failed call."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from voxport.runtime.batch import BatchStream, Scheduler
from voxport.runtime.engine import Engine
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

# long enough that the dual-track format (one text token a frame) keeps speaking past 50 frames
TEXTS = ["Hello there! How are you doing today? I am fine, thanks, and the weather is lovely out here.",
         "The quick brown fox jumps over the lazy dog, one frame at a time, again and again and again.",
         "Speech synthesis turns written text into spoken audio, one frame at a time, all day long.",
         "A voice prompt is a short utterance with its transcript, used to clone a speaker's voice.",
         "Numbers like 1, 2, 3, 42 and 2026 appear in text; so do dates like the 22nd of November."]


def _streams(sampled: bool) -> list[BatchStream]:
    # frame limits apart, so streams leave at different steps and the fifth joins mid-batch
    frames = [60, 52, 30, 56, 50]
    settings = [Sampling(temperature=0.9, top_k=50), Sampling(temperature=1.2, top_k=20, top_p=0.8),
                Sampling(temperature=0.7, top_k=5), Sampling(temperature=1.0, top_k=60, top_p=0.9),
                Sampling(temperature=0.8, top_k=30)] if sampled else [Sampling()] * 5
    return [BatchStream(t, max_frames=f, sampling=s, seed=11 + i) for i, (t, f, s) in enumerate(zip(TEXTS, frames, settings))]


def _alone(rt: Runtime, s: BatchStream) -> np.ndarray:
    speech = Speech(rt, s.text, max_frames=s.max_frames, sampling=s.sampling, seed=s.seed)
    for _ in speech:
        pass
    return np.stack(speech.codes)


@pytest.mark.parametrize("artifact", ["tiny_dir", "qwen_dir", "tiny_dir:q8"])
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_a_streams_codes_in_a_batch_of_4_equal_its_codes_alone(artifact, sampled, request):
    fixture, _, dtype = artifact.partition(":")
    rt = Runtime(request.getfixturevalue(fixture), dtype=dtype or "fp32")
    streams = _streams(sampled)
    sched = Scheduler(rt, slots=4, capacity=256)
    sched.run(streams)
    assert max(rows for rows, _ in sched.timings) == 4 and min(rows for rows, _ in sched.timings) < 4
    for s in streams:
        alone = _alone(rt, s)
        assert s.done in ("stop", "frames")
        assert np.array_equal(np.stack(s.codes), alone), (artifact, s.text)
    # at least one stream compared over 50+ frames (greedy, the random-weight tiny Qwen3-TTS stops four
    # of these texts at its eos after 15 frames: the stop rule, a leave mid-batch)
    assert max(len(s.codes) for s in streams) >= 50, [len(s.codes) for s in streams]


def _inputs(rt: Runtime, slots: int, streams: list[BatchStream]) -> list[list[np.ndarray]]:
    """Each stream's next-frame input (the frame graph's next_embeds) after every frame, run `slots` at once."""
    sched, seen = Scheduler(rt, slots, capacity=256), []
    for s in streams:
        lane, got = s.lane(rt), []
        deliver = lane.deliver
        lane.deliver = lambda frame, lane=lane, got=got, deliver=deliver: (got.append(lane.embeds.copy()), deliver(frame))
        sched.join(lane)
        seen.append(got)
    while sched.lanes:
        sched.step()
    return seen


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_a_rows_frame_outputs_in_a_batch_are_bitwise_its_outputs_alone(tiny_dir, dtype):
    """Every row's arithmetic is its own, to the last bit: a stream's next-frame input in a batch of 3
    equals its input alone after every frame. Two things broke this before (the codes still agreed on
    tiny; on marvis-250m they did not, after 1 to 7 frames): the sum of a frame's code embeddings
    (ReduceSum added in an order that depends on the batch), and q8's one activation scale per call,
    which mixed the rows (q8 frames now quantize each row by itself)."""
    rt = Runtime(tiny_dir, dtype=dtype)

    def streams():
        return [BatchStream(t, max_frames=12, sampling=Sampling(temperature=0.9, top_k=50), seed=5 + i)
                for i, t in enumerate(TEXTS[:3])]

    batched = _inputs(rt, 3, streams())
    for i, s in enumerate(streams()):
        (alone,) = _inputs(rt, 1, [s])
        assert len(alone) == len(batched[i]) == 12
        for frame, (a, b) in enumerate(zip(alone, batched[i])):
            assert np.array_equal(a, b), (dtype, i, frame, float(np.abs(a - b).max()))


def test_cancel_frees_a_slot_within_one_frame(tiny_dir):
    rt = Runtime(tiny_dir)
    sched = Scheduler(rt, slots=2, capacity=256)
    a, b, c = (BatchStream(t, max_frames=40) for t in TEXTS[:3])
    la, lb, lc = (s.lane(rt) for s in (a, b, c))
    sched.join(la)
    sched.join(lb)
    sched.step()
    assert sched.free == 0
    a.cancel()
    n = len(a.codes)
    left = sched.step()  # the next frame boundary: a leaves before the call, b keeps going
    assert left == [la] and a.done == "cancel" and len(a.codes) == n and sched.free == 1
    sched.join(lc)  # its slot is taken by the next stream at once
    sched.run([])
    assert np.array_equal(np.stack(b.codes), _alone(rt, b)) and np.array_equal(np.stack(c.codes), _alone(rt, c))


def test_a_stream_without_a_frame_limit_takes_the_models_default(tiny_dir):
    rt = Runtime(tiny_dir)
    s = BatchStream(TEXTS[0], sampling=Sampling(temperature=0.9, top_k=50), seed=3)
    assert s.lane(rt).max_frames == rt.contract.max_frames(None) != 7
    rt.contract.defaults["max_frames"] = 7  # as a manifest saying 7 would: the stream follows it
    assert s.lane(rt).max_frames == 7


def test_an_engine_stream_cancelled_mid_way_leaves_its_row_at_the_next_frame(tiny_dir):
    rt = Runtime(tiny_dir)
    engine = Engine(rt, slots=2)
    cancel = threading.Event()
    held = Speech(rt, TEXTS[0], max_frames=400, cancel=cancel, engine=engine)
    chunks = iter(held)
    next(chunks)  # its first frame (the prompt's call, in this thread)
    next(chunks)  # the second comes from the engine: its lane has joined
    t = time.perf_counter()
    while not engine.stats()["active"]:
        assert time.perf_counter() - t < 2, "the lane never joined"
        time.sleep(0.001)
    cancel.set()
    t = time.perf_counter()
    while engine.stats()["active"]:
        assert time.perf_counter() - t < 2, "the cancelled lane kept its row"
        time.sleep(0.001)
    assert len(held.codes) < 400 and list(chunks) == []
    s = Speech(rt, TEXTS[1], max_frames=12, seed=4, engine=engine)  # the row is taken again
    list(s)
    engine.stop()
    assert np.array_equal(np.stack(s.codes), _alone(rt, BatchStream(TEXTS[1], max_frames=12, seed=4)))


def test_a_failed_engine_call_ends_its_streams_with_the_error_and_the_engine_goes_on(tiny_dir, monkeypatch):
    rt = Runtime(tiny_dir)
    engine = Engine(rt, slots=2)
    real, calls = rt.contract.run, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected frame failure")
        return real(*a, **kw)

    monkeypatch.setattr(rt.contract, "run", flaky)
    with pytest.raises(RuntimeError, match="injected frame failure"):
        list(Speech(rt, TEXTS[0], max_frames=10, engine=engine))
    s = Speech(rt, TEXTS[1], max_frames=12, seed=4, engine=engine)
    list(s)
    monkeypatch.undo()
    engine.stop()
    assert engine.stats()["active"] == 0
    assert np.array_equal(np.stack(s.codes), _alone(rt, BatchStream(TEXTS[1], max_frames=12, seed=4)))
