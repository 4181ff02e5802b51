"""The generation contract's pieces that take several LM steps per frame, a penalty per codebook range,
a fixed-id prompt format and codec noise, on hand-written manifest fragments (no artifact, no graphs)."""

from __future__ import annotations

import numpy as np
import pytest

from voxport.errors import ArtifactError, InputError
from voxport.runtime.codec_stream import codec_noise, codec_rng
from voxport.runtime.contract import FrameContract, LogitsState
from voxport.runtime.prompt import TokenIdsPrompt, Utterance


def _generation(**frame) -> dict:
    cache = {"layers": 1, "kv_heads": 1, "head_dim": 8, "kv": ["key", "value"],
             "input": "past.{layer}.{kv}", "output": "present.{layer}.{kv}", "layout": "static", "capacity": 64,
             "slots_axis": 0, "positions_axis": 2, "lengths": "cache_lengths", "shared": True}
    return {"generation": {
        "frame": {"graph": "frame", "codes": "codes", "noise": "noise", "embeds": {"input": "e", "output": "n"},
                  "cache": cache, **frame},
        "codebooks": 3, "noise_vocab": 5, "stop": {"codebooks": [0, 1], "token": 4},
        "sampling": [{"name": "all", "codebooks": [0, 3], "vocab": 5,
                      "inputs": {"temperature": "t", "top_k": "k", "top_p": "tp"}}]}}


def test_steps_set_how_far_the_cache_grows():
    assert FrameContract(_generation()).advance(4) == 4  # one LM step per call: the input's length
    assert FrameContract(_generation(steps=7)).advance(4) == 10 and FrameContract(_generation(steps=7)).advance(1) == 7


def test_a_penalty_row_per_codebook_of_a_range():
    spec = {"codebooks": [0, 3], "repetition_penalty": "rp", "seen": "seen"}
    state = LogitsState(spec, 5, 1.3)
    state.update(np.array([1, 4, 0]))
    state.update(np.array([2, 4, 3]))
    f = state.feeds()
    assert set(f) == {"rp", "seen"} and f["seen"].shape == (1, 3, 5)  # no bias without one declared
    want = np.zeros((1, 3, 5), np.float32)
    want[0, 0, [1, 2]] = want[0, 1, 4] = want[0, 2, [0, 3]] = 1
    assert np.array_equal(f["seen"], want) and f["rp"].shape == (1,) and f["rp"][0] == pytest.approx(1.3)


def test_codec_noise_is_the_same_drawn_whole_or_frame_by_frame():
    spec = {"input": "codec_noise", "per_frame": 1000, "distribution": "normal"}
    whole = codec_noise(spec, codec_rng(11), 6)["codec_noise"]
    rng = codec_rng(11)
    steps = np.concatenate([codec_noise(spec, rng, n)["codec_noise"] for n in (1, 2, 3)], axis=1)
    assert whole.shape == (1, 6, 1000) and whole.dtype == np.float32 and np.array_equal(whole, steps)
    assert abs(float(whole.mean())) < 0.03 and abs(float(whole.std()) - 1) < 0.03  # 6,000 draws
    assert not np.array_equal(whole, codec_noise(spec, codec_rng(12), 6)["codec_noise"])
    assert codec_noise(None, codec_rng(0), 3) == {}
    with pytest.raises(ArtifactError, match="codec noise distribution 'uniform' is not known"):
        codec_noise({**spec, "distribution": "uniform"}, codec_rng(0), 1)


@pytest.fixture
def token_ids_prompt(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<unk>", "<bos>", "amy:", "hi", "there", "<laugh>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tok.json"))
    rt = {"tokenizer_file": "tok.json", "generation": {
        "speakers": {"kind": "name", "names": ["amy"]},
        "prompt": {"format": "token_ids", "graph": "embed", "ids": "input_ids", "template": "{speaker}: {text}",
                   "prefix": [90], "suffix": [91, 92], "add_special_tokens": False}}}
    return TokenIdsPrompt(tmp_path, rt)


def test_token_ids_prompt_wraps_the_tokenized_template(token_ids_prompt):
    ids, none = token_ids_prompt.build([Utterance("hi <laugh> there", "amy")])
    assert none is None and ids.tolist() == [[90, 2, 3, 5, 4, 91, 92]]  # the tag is text
    assert token_ids_prompt.feeds(ids, none) == {"input_ids": ids}
    assert token_ids_prompt.build([Utterance("hi", None)])[0].tolist() == [[90, 3, 91, 92]]  # no speaker: text alone


@pytest.mark.parametrize("turns, message", [
    ([Utterance("hi", "bob")], "speaker 'bob' is not one of this model's speakers: amy"),
    ([Utterance("hi", "amy", language="german")], "takes no language option"),
    ([Utterance("hi", "amy", instruct="shout")], "takes no instruction"),
    ([Utterance("ref", "amy", codes=np.zeros((2, 7), np.int64)), Utterance("hi", "amy")], "does not clone voices"),
])
def test_token_ids_prompt_refuses_what_it_cannot_say(token_ids_prompt, turns, message):
    with pytest.raises(InputError, match=message):
        token_ids_prompt.build(turns)
