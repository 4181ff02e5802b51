"""The frame graph's static KV cache: buffers written in place, rows of different lengths in one call,
each row's codes those it has alone; an artifact of the previous format refused with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voxport.errors import ArtifactError
from voxport.runtime.prompt import Utterance
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling

TEXTS = ["Hello there.", "A somewhat longer sentence than the first one, to differ in length.", "Yes."]
SETTINGS = [Sampling(), Sampling(temperature=0.9, top_k=50), Sampling(temperature=1.2, top_k=20, top_p=0.8)]


def _prompt(rt: Runtime, text: str, sampling: Sampling, frames: int):
    prepared = rt.prepare([Utterance(text, rt.default_speaker)], frames, sampling)
    embeds, per_frame = rt.embed(prepared)
    return prepared, embeds, per_frame


def _extra(per_frame, logits, n):
    return {**per_frame[min(n, len(per_frame) - 1)], **(logits.feeds() if logits else {})}


def _alone(rt: Runtime, text: str, sampling: Sampling, seed: int, frames: int) -> np.ndarray:
    c, session = rt.contract, rt.graphs.session(rt.contract.graph)
    prepared, embeds, per_frame = _prompt(rt, text, sampling, frames)
    cache, rng, logits, out = c.new_cache(1, prepared.tokens + frames), np.random.default_rng(seed), \
        c.logits_state(sampling), []
    for n in range(frames):
        codes, embeds_next = c.run(session, c.feeds(embeds, cache.lengths, c.sampling_feeds(sampling),
                                                    c.draw_noise(rng), _extra(per_frame, logits, n)), cache)
        cache.lengths += embeds.shape[1]
        embeds = embeds_next
        if logits:
            logits.update(codes[0])
        out.append(codes[0])
    return np.stack(out)


def _batched(rt: Runtime, frames: int, capacity: int) -> tuple[list[np.ndarray], object]:
    """Slot i's prompt is prefilled (that slot's row alone) after i batched frames of the slots
    before it, so rows hold different lengths; every frame after is one call for all joined rows."""
    c, session = rt.contract, rt.graphs.session(rt.contract.graph)
    cache = c.new_cache(len(TEXTS), capacity)
    rows = []
    for slot, (text, s) in enumerate(zip(TEXTS, SETTINGS)):
        prepared, embeds, per_frame = _prompt(rt, text, s, frames)
        rows.append({"embeds": embeds, "per_frame": per_frame, "rng": np.random.default_rng(slot),
                     "logits": c.logits_state(s), "sampling": c.sampling_feeds(s), "codes": []})

    def record(r, codes, embeds):
        r["codes"].append(codes)
        r["embeds"] = embeds
        if r["logits"]:
            r["logits"].update(codes)

    while any(len(r["codes"]) < frames for r in rows):
        live = sum(bool(r["codes"]) for r in rows)  # rows [0, live) have joined
        if live and len(rows[live - 1]["codes"]) < frames:  # they step together (the first is longest)
            joined = rows[:live]
            feeds = [c.feeds(r["embeds"], cache.lengths[i:i + 1], r["sampling"], c.draw_noise(r["rng"]),
                             _extra(r["per_frame"], r["logits"], len(r["codes"]))) for i, r in enumerate(joined)]
            codes, embeds = c.run(session, {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}, cache, 0, live)
            cache.lengths[:live] += 1
            for i, r in enumerate(joined):
                record(r, codes[i], embeds[i:i + 1])
        if live < len(rows):  # the next slot joins: its prompt through the frame graph, its row alone
            r = rows[live]
            codes, embeds = c.run(session, c.feeds(r["embeds"], cache.lengths[live:live + 1], r["sampling"],
                                                   c.draw_noise(r["rng"]), _extra(r["per_frame"], r["logits"], 0)),
                                  cache, live, live + 1)
            cache.lengths[live] += r["embeds"].shape[1]
            record(r, codes[0], embeds)
    return [np.stack(r["codes"]) for r in rows], cache


@pytest.mark.parametrize("artifact", ["tiny_dir", "qwen_dir"])
def test_rows_of_a_batch_give_the_codes_each_stream_has_alone(artifact, request):
    rt = Runtime(request.getfixturevalue(artifact))
    frames, capacity = 12, 200
    batched, cache = _batched(rt, frames, capacity)
    for slot, (text, s) in enumerate(zip(TEXTS, SETTINGS)):
        alone = _alone(rt, text, s, slot, len(batched[slot]))
        assert len(batched[slot]) >= frames and np.array_equal(batched[slot], alone), (artifact, slot)
    lengths = cache.lengths.tolist()
    assert len(set(lengths)) == 3  # rows of three different lengths
    # written in place: each row holds its positions, the rest of the buffer is as allocated (zeros)
    for buf in cache.buffers:
        for slot, n in enumerate(lengths):
            assert np.abs(buf[slot, :, :n]).max() > 0 and not buf[slot, :, n:].any()


def test_an_artifact_of_the_previous_format_is_refused_with_one_line_asking_for_a_re_export(tiny_dir, tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    manifest = json.loads((tiny_dir / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(ArtifactError, match=r"format_version 2, this voxport reads 3; re-export it") as e:
        Runtime(d)
    assert "\n" not in str(e.value)
