"""The three implementations of the sampling arithmetic, no model needed: the frame graph's Sampler
(onnxruntime), the PyTorch reference (gumbel_choice) and the step loop's numpy `choose`, fed the same
logits and noise, pick the same ids; the set top-p keeps is transformers' TopPLogitsWarper's."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from voxport.exporter.blocks import Sampler
from voxport.exporter.onnx_builder import GraphBuilder
from voxport.exporter.torch_steps import gumbel_choice
from voxport.runtime.sampling import Sampling, choose, top_p_keep

V = 300


@pytest.fixture(scope="module")
def graph():
    b = GraphBuilder("sampler")
    x = b.input("logits", "float32", (1, 1, V))
    t, k, p = b.input("temperature", "float32", ()), b.input("top_k", "int64", ()), b.input("top_p", "float32", ())
    noise = b.input("noise", "float32", (1, 1, V))
    b.output(Sampler(b, t, k, p, noise, vocab=V)(x, 0), "code", "int64", (1, 1))
    return ort.InferenceSession(b.model().SerializeToString(), providers=["CPUExecutionProvider"])


# greedy; top-k alone; top-p alone; both; top-p so small only the best id is left; p = 1 exactly
CASES = [(0.0, 50, 1.0), (0.9, 50, 1.0), (1.0, V, 0.9), (0.7, 40, 0.8), (1.3, V, 0.01), (2.0, 7, 1.0)]


@pytest.mark.parametrize("temperature,top_k,top_p", CASES)
def test_graph_torch_and_numpy_pick_the_same_ids(graph, temperature, top_k, top_p):
    rng = np.random.default_rng(int(temperature * 10) + top_k)
    s = Sampling(temperature, top_k, top_p=top_p)
    picks = {"graph": [], "torch": [], "numpy": []}
    for _ in range(200):
        # peaked rows (scale 3): top-p then keeps a handful of ids, not most of the row
        logits = (rng.standard_normal((1, V)) * 3).astype(np.float32)
        noise = rng.random((1, V), dtype=np.float32)
        picks["graph"].append(int(graph.run(None, {
            "logits": logits[None], "temperature": np.array(temperature, np.float32),
            "top_k": np.array(top_k, np.int64), "top_p": np.array(top_p, np.float32), "noise": noise[None]})[0][0, 0]))
        picks["torch"].append(int(gumbel_choice(torch.from_numpy(logits), torch.from_numpy(noise),
                                                torch.tensor(temperature), torch.tensor(top_k), torch.tensor(top_p))[0]))
        picks["numpy"].append(int(choose(logits, s, noise, top_p)[0]))
    assert picks["graph"] == picks["torch"] == picks["numpy"]
    assert len(set(picks["graph"])) > 1  # the rows differ: a constant pick would prove nothing


def test_top_p_keeps_what_transformers_keeps():
    from transformers.generation.logits_process import TopPLogitsWarper

    rng = np.random.default_rng(3)
    for top_p in (0.3, 0.6, 0.9, 0.99):
        scaled = (rng.standard_normal((64, V)) * 2).astype(np.float32)
        warped = TopPLogitsWarper(top_p)(None, torch.from_numpy(scaled))
        ours = top_p_keep(scaled, np.float32(top_p))
        assert np.array_equal(ours, torch.isfinite(warped).numpy()), top_p
        assert 1 < ours.sum(-1).mean() < V  # some rows keep several ids, none keeps all


def test_top_p_samples_only_the_kept_ids_in_proportion():
    """p = [0.5, 0.3, 0.15, 0.05], top-p 0.7 keeps ids 0 and 1 (0.5 above id 1, 0.8 above id 2):
    over 4,000 draws only they come up, at about 5:3."""
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    rng = np.random.default_rng(0)
    ids = np.array([choose(logits, Sampling(1.0, 4), rng.random((1, 4), dtype=np.float32), 0.7)[0]
                    for _ in range(4000)])
    assert set(ids.tolist()) == {0, 1}
    assert abs((ids == 0).mean() - 0.5 / 0.8) < 0.03


def test_top_p_out_of_range_is_refused():
    from voxport.errors import InputError

    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InputError, match=r"top-p must be in \(0, 1\]"):
            Sampling(0.9, 50, top_p=bad).validate(V)


def test_contract_feeds_each_groups_top_p_and_refuses_it_without_an_input():
    from voxport.errors import InputError
    from voxport.runtime.contract import FrameContract

    def contract(groups):
        frame = {"graph": "frame", "codes": "codes", "noise": "noise", "embeds": {"input": "e", "output": "n"},
                 "cache": {"layers": 1, "kv_heads": 1, "head_dim": 8, "kv": ["key"], "input": "a{layer}{kv}",
                           "output": "b{layer}{kv}", "layout": "static", "capacity": 16, "lengths": "l"}}
        return FrameContract({"generation": {"frame": frame, "codebooks": 2, "noise_vocab": V, "sampling": groups,
                                             "stop": {"codebooks": [0, 1], "token": 0}}})

    groups = [{"name": "a", "codebooks": [0, 1], "vocab": V, "defaults": {"top_p": 0.95},
               "inputs": {"temperature": "t", "top_k": "k", "top_p": "p"}},
              {"name": "b", "codebooks": [1, 2], "vocab": V, "inputs": {"temperature": "t2", "top_k": "k2", "top_p": "p2"}}]
    feeds = contract(groups).sampling_feeds(Sampling(0.9, 50))
    assert (feeds["p"].tolist(), feeds["p2"].tolist()) == ([np.float32(0.95)], [1.0])  # the model's default, else none
    feeds = contract(groups).sampling_feeds(Sampling(0.9, 50, top_p=0.5))
    assert feeds["p"].tolist() == feeds["p2"].tolist() == [0.5]  # one row each
    old = [{**groups[1], "inputs": {"temperature": "t", "top_k": "k"}}]  # exported before top-p
    assert "p" not in contract(old).sampling_feeds(Sampling(0.9, 50))
    with pytest.raises(InputError, match="samples without top-p"):
        contract(old).sampling_feeds(Sampling(0.9, 50, top_p=0.5))
