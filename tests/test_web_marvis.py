"""The page on an export of the original CSM layout (tests/test_marvis.py): the same prompt ids as
Python with a fine-tune's prosody markers whole, the same greedy codes, the same audio."""

from __future__ import annotations

import numpy as np

from tests.test_marvis import MARKED, MARKERS
from tests.web_helpers import check_download, load_via_ui, open_page, python_speech, serving, speak_via_ui, use_library

FRAMES = 12


def test_page_speaks_the_original_layout_with_pythons_ids_and_codes(browser, marvis_dir):
    from voxport.runtime.prompt import Utterance
    from voxport.runtime.runtime import Runtime

    runtime = Runtime(marvis_dir)
    with serving([marvis_dir]) as url:
        ctx, page, console = open_page(browser, url)
        assert load_via_ui(page) == "ready", page.text_content("#error")
        turns = [[{"text": t, "speaker": s}] for t in [MARKED, *MARKERS, "[HAPPY][PAUSE:500ms]x"] for s in (0, 1)]
        expected = [runtime.prompts.build([Utterance(t[0]["text"], t[0]["speaker"])])[0][0].tolist() for t in turns]
        assert speak_via_ui(page, MARKED, FRAMES)["frames"] == FRAMES
        codes, pcm, _ = python_speech(runtime, MARKED, max_frames=FRAMES)
        check_download(page, pcm)  # the page's WAV: Python's PCM
        use_library(page)  # voxport-web on the same page: prompt ids and codes
        got = page.evaluate("(turns) => window.lib.tokenize(turns)", turns)
        assert [list(ids) for ids in got] == expected
        marker_ids = {runtime.prompts.tokenizer.token_to_id(m) for m in MARKERS}
        assert all(len([i for i in ids if i in marker_ids]) == 1 for ids in expected[2:10])  # one id each
        r = page.evaluate("(o) => window.lib.speak(o)", {"text": MARKED, "maxFrames": FRAMES, "temperature": 0})
        assert len(codes) == FRAMES and np.array_equal(np.array(r["codes"]), codes)
        assert console.errors == []
        ctx.close()
