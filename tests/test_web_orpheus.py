"""The page speaks an Orpheus artifact from its manifest (the token_ids prompt, seven LM steps per frame
call, a repetition penalty per position, SNAC noise from the seed, a look-ahead codec stream) with the
Python runtime's codes and audio: the tiny preset on wasm, greedy and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from tests.web_helpers import check_download, open_page, python_speech, serving, wait_state

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
    page.select_option("#backend", "wasm")
    page.fill("#threads", "1")
    page.wait_for_function("document.querySelector('#precision').dataset.backend === 'wasm'")
    page.select_option("#precision", "fp32")
    page.click("#load")
    assert wait_state(page, ["ready", "error"]) == "ready", page.text_content("#error")
    assert page.locator("#speaker option").all_text_contents() == runtime.rt["generation"]["speakers"]["names"]
    page.select_option("#speaker", "leah")
    page.fill("#text", TEXT)
    page.fill("#max-frames", str(FRAMES))
    page.fill("#temperature", "0")
    page.fill("#seed", "4")
    page.click("#speak")
    assert wait_state(page, ["done", "error"]) == "done", page.text_content("#error")
    codes, pcm, _ = python_speech(runtime, TEXT, speaker="leah", sampling=Sampling(), seed=4, max_frames=FRAMES)
    assert np.array_equal(np.array(page.evaluate("window.voxport.last.codes")), codes)
    assert pcm.shape == (FRAMES * 2048,)  # the look-ahead stream is flushed: every frame is heard
    check_download(page, pcm)  # SNAC's noise drawn from the seed as Python draws it

    r = page.evaluate("(o) => window.voxport.speak(o)", {
        "text": TEXT, "speaker": "zac", "maxFrames": FRAMES, "seed": 9,
        "sampling": {"temperature": 0.6, "topP": 0.8}})
    sampled, _, _ = python_speech(runtime, TEXT, speaker="zac", sampling=Sampling(0.6, 257, top_p=0.8), seed=9,
                                  max_frames=FRAMES)
    assert np.array_equal(np.array(r["codes"]), sampled)
    assert console.errors == []
    ctx.close()
