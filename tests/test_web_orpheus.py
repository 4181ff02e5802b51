"""The page speaks an Orpheus artifact from its manifest (the token_ids prompt, seven LM steps per frame
call over the static cache, a repetition penalty per position, SNAC noise from the seed, a look-ahead
codec stream) with the Python runtime's codes and audio: the tiny preset on wasm, greedy and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from tests.web_helpers import check_download, load_via_ui, open_page, python_speech, serving, speak_via_ui, use_library

TEXT = "Hello <laugh> there, how are you?"
FRAMES = 10


@pytest.fixture(scope="module")
def site(orpheus_dir):
    with serving([orpheus_dir]) as url:
        yield url


@pytest.fixture(scope="module")
def runtime(orpheus_dir):
    from voxport.runtime.runtime import Runtime

    return Runtime(orpheus_dir)


def test_page_speaks_python_codes_and_audio(browser, site, runtime):
    from voxport.runtime.sampling import Sampling

    ctx, page, console = open_page(browser, site)
    assert load_via_ui(page, threads="1") == "ready", page.text_content("#error")
    assert page.locator("#speaker option").all_text_contents() == runtime.rt["generation"]["speakers"]["names"]
    page.select_option("#speaker", "leah")
    page.fill("#seed", "4")
    assert speak_via_ui(page, TEXT, FRAMES)["frames"] == FRAMES
    codes, pcm, _ = python_speech(runtime, TEXT, speaker="leah", sampling=Sampling(), seed=4, max_frames=FRAMES)
    assert pcm.shape == (FRAMES * 2048,)  # the look-ahead stream is flushed: every frame is heard
    check_download(page, pcm)  # the codes, and SNAC's noise drawn from the seed as Python draws it

    use_library(page)
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "voice": "leah", "maxFrames": FRAMES,
                                                     "temperature": 0, "seed": 4})
    assert np.array_equal(np.array(r["codes"]), codes)
    s = r["stats"]
    assert s["graph_ms"]["frame"]["calls"] == FRAMES and s["runtime_calls_per_frame"] == 1, s
    # no sampling options: the manifest's (T 0.6, top-p 0.8, penalty 1.3 per position), as `voxport speak`
    r = page.evaluate("(o) => window.lib.speak(o)", {"text": TEXT, "voice": "zac", "maxFrames": FRAMES, "seed": 9})
    sampled, _, _ = python_speech(runtime, TEXT, speaker="zac", sampling=Sampling(None, None), seed=9,
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), sampled)
    assert not np.array_equal(sampled, python_speech(runtime, TEXT, speaker="zac", sampling=Sampling(None, None),
                                                     seed=10, max_frames=FRAMES)[0])  # the noise mattered
    assert console.errors == []
    ctx.close()
