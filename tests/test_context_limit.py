"""A runtime held to fewer cache positions per stream than the model's context (`voxport serve
--context N`): texts are planned into utterances that fit it, a scheduler's slots are that long, and a
value the model cannot take is one line before anything listens."""

from __future__ import annotations

import pytest

from voxport.cli import main
from voxport.errors import InputError
from voxport.runtime.batch import Scheduler
from voxport.runtime.runtime import Runtime
from voxport.runtime.stream import Speech
from voxport.runtime.sampling import Sampling

TEXT = ("The quick brown fox jumps over the lazy dog. A second sentence follows it here. "
        "And a third one closes the paragraph.")


def _speak(rt, frames):
    s = Speech(rt, TEXT, max_frames=frames, sampling=Sampling(0.0, 1))
    for _ in s:
        pass
    return s


def test_a_limited_context_plans_utterances_that_fit_and_sizes_the_slots(tiny_dir):
    whole = Runtime(tiny_dir)
    model = whole.rt["max_positions"]
    frames = 6
    alone = _speak(whole, frames)
    assert len(alone.utterances) == 1  # the whole context takes the text at once
    prompt = whole.prompts.build([alone._utterance(TEXT)])[0].shape[1]

    limit = prompt + frames - 1  # one position short of the whole text and its frames
    rt = Runtime(tiny_dir, context=limit)
    assert rt.rt["max_positions"] == limit < model and rt.contract.capacity == limit
    split = _speak(rt, frames)
    assert len(split.utterances) >= 2, split.utterances  # planned into pieces that fit
    for u in split.utterances:
        assert rt.prompts.build([split._utterance(u["text"])])[0].shape[1] + frames <= limit
    assert " ".join(u["text"] for u in split.utterances).split() == TEXT.split()  # nothing dropped
    assert Scheduler(rt, 2).cache.capacity == limit  # a slot holds the limited context, not the model's


@pytest.mark.parametrize("positions", [1, 10 ** 9])
def test_a_context_the_model_cannot_take_is_refused(tiny_dir, positions):
    with pytest.raises(InputError, match=rf"context must be between 2 and this model's \d+ positions, got {positions}"):
        Runtime(tiny_dir, context=positions)


def test_serve_refuses_a_context_past_the_models_before_listening(tiny_dir, capsys):
    model = Runtime(tiny_dir).rt["max_positions"]
    assert main(["serve", str(tiny_dir), "--port", "0", "--context", str(model + 1)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--context must be between 2 and {tiny_dir}'s {model} positions, got {model + 1}" in err
