"""The codec batched across streams (codec_stream.decode_rows, the engine's codec thread): a stream's
audio from a call with other streams' rows is bit for bit its audio alone, whatever each stream's
position (the codec state's offset), noise or look-ahead; the server's streams share codec calls."""

from __future__ import annotations

import numpy as np
import pytest

from voxport.runtime.codec_stream import CodecStream, codec_rng, decode_rows
from voxport.runtime.engine import Engine
from voxport.runtime.runtime import Runtime
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

from tests.api_helpers import together
from tests.test_batch import TEXTS


def _codes(rt: Runtime, frames: int, seed: int) -> np.ndarray:
    # ids below 32: in range for every family's codebooks (tiny presets' are small)
    return np.random.default_rng(seed).integers(0, 32, (frames, rt.rt["num_codebooks"]))


@pytest.mark.parametrize("artifact", ["tiny_dir", "tiny_dir:q4", "orpheus_dir"])
def test_a_streams_audio_in_a_batched_codec_call_is_bitwise_its_audio_alone(artifact, request):
    name, _, dtype = artifact.partition(":")
    # one intra-op thread, as the server runs its sessions: with two, a 3-row call splits a kernel's work
    # otherwise than a 1-row call (row 0 of this test differed by 1e-6 on tiny fp32)
    rt = Runtime(request.getfixturevalue(name), dtype=dtype or "fp32", threads=1)
    # stream i decodes 3*i frames alone first, so the three are at different offsets when they share
    # calls; orpheus' codec draws noise from each stream's own seed and looks ahead (no audio at first)
    codes = [_codes(rt, 3 * i + 12, seed=i) for i in range(3)]
    chunks = [[c[j:j + 1] for j in range(3 * i)] + [c[j:j + 2] for j in range(3 * i, len(c), 2)]
              for i, c in enumerate(codes)]

    alone = []
    for i in range(3):
        s = CodecStream(rt.graphs, rng=codec_rng(i))
        alone.append(np.concatenate([*(s.decode(k) for k in chunks[i]), s.flush()]))
    streams = [CodecStream(rt.graphs, rng=codec_rng(i)) for i in range(3)]
    got = [[s.decode(k) for k in chunks[i][:3 * i]] for i, s in enumerate(streams)]
    for step in range(6):  # then 12 frames each in 2-frame chunks, every call all three rows
        for i, pcm in enumerate(decode_rows(streams, [chunks[i][3 * i + step] for i in range(3)])):
            got[i].append(pcm)
    for i, s in enumerate(streams):
        audio = np.concatenate([*got[i], s.flush()])
        assert audio.shape == alone[i].shape and audio.shape[0] > 0, i
        assert np.array_equal(audio, alone[i]), (i, float(np.abs(audio - alone[i]).max()))


def test_a_batched_codec_call_takes_chunks_of_one_length(tiny_dir):
    rt = Runtime(tiny_dir)
    a, b = CodecStream(rt.graphs), CodecStream(rt.graphs)
    with pytest.raises(ValueError, match=r"a batched codec call takes chunks of one length, got \[1, 2\] frames"):
        decode_rows([a, b], [_codes(rt, 1, 0), _codes(rt, 2, 1)])
    assert a.calls == b.calls == 0  # nothing decoded, no state moved


def test_engine_streams_share_codec_calls_and_each_gets_its_audio_alone(tiny_dir):
    rt = Runtime(tiny_dir, threads=1)
    alone = [np.concatenate(list(Speech(rt, TEXTS[i], max_frames=20 + 5 * i, seed=i))) for i in range(3)]
    engine = Engine(rt, slots=3)
    out = together(3, lambda i: np.concatenate(list(Speech(rt, TEXTS[i], max_frames=20 + 5 * i, seed=i,
                                                            engine=engine))))
    stats = engine.stats()
    engine.stop()
    for i in range(3):
        assert np.array_equal(out[i], alone[i]), i
    # one chunk a frame; each stream's first in its own thread (the first byte waits for no batch), the
    # rest in the codec thread, where one call decoded several streams' chunks: fewer calls than chunks
    assert stats["codec_rows"] == sum(20 + 5 * i - 1 for i in range(3)), stats
    assert stats["codec_calls"] < stats["codec_rows"], stats


def test_a_failed_codec_call_ends_its_streams_with_the_error_and_the_next_call_runs(tiny_dir, monkeypatch):
    import voxport.runtime.engine as engine_mod

    rt = Runtime(tiny_dir)
    engine = Engine(rt, slots=2)
    real, calls = engine_mod.decode_rows, []

    def flaky(streams, codes):
        calls.append(len(streams))
        if len(calls) == 2:
            raise RuntimeError("injected codec failure")
        return real(streams, codes)

    monkeypatch.setattr(engine_mod, "decode_rows", flaky)
    with pytest.raises(RuntimeError, match="injected codec failure"):
        list(Speech(rt, TEXTS[0], max_frames=6, engine=engine))
    audio = np.concatenate(list(Speech(rt, TEXTS[1], max_frames=6, seed=4, engine=engine)))
    engine.stop()
    assert np.array_equal(audio, np.concatenate(list(Speech(rt, TEXTS[1], max_frames=6, seed=4))))
    with pytest.raises(RuntimeError, match="the engine stopped"):
        engine.codecs.decode(CodecStream(rt.graphs), _codes(rt, 1, 0))


def test_the_codec_session_takes_its_own_thread_count(tiny_dir):
    rt = Runtime(tiny_dir, threads=2, codec_threads=1)  # serve --threads 2 --codec-threads 1
    threads = {g: rt.graphs.session(g).get_session_options().intra_op_num_threads
               for g in (rt.contract.graph, rt.rt["codec_stream"]["graph"])}
    assert threads == {rt.contract.graph: 2, rt.rt["codec_stream"]["graph"]: 1}


def test_a_server_with_a_chunk_schedule_gives_each_request_its_audio_alone(tiny_dir, tmp_path):
    from voxport.runtime.audio import pcm16

    from tests.api_helpers import api_server, health, speech

    rt = Runtime(tiny_dir, threads=1)
    texts = [TEXTS[0], TEXTS[2], TEXTS[3]]  # chunks of 1, 2, 2, ... frames: the 2-frame ones share calls
    alone = [pcm16(np.concatenate(list(Speech(rt, t, max_frames=15, seed=i, sampling=Sampling(0.9, 50),
                                              chunk_frames=(1, 2))))) for i, t in enumerate(texts)]
    with api_server([tiny_dir], max_streams=3, chunk_frames=(1, 2), voices_dir=tmp_path) as port:
        out = together(3, lambda i: speech(port, model="tiny", input=texts[i], seed=i, max_frames=15, temperature=0.9,
                                           top_k=50, response_format="pcm"))
        stats = health(port)["batches"]["tiny:fp32"]
    assert [o[0] for o in out] == [200] * 3
    assert [o[2] for o in out] == alone
    assert stats["codec_calls"] < stats["codec_rows"] == 3 * 7, stats  # 15 frames: 1 + 7 x 2, the first alone
