"""The browser benchmark's warm row: a page that has run its kernels long enough for V8's optimized tier,
timed beside the fresh page's first utterance."""

from __future__ import annotations

from tests.web_helpers import require_browser


def test_warm_row_is_timed_after_the_codec_calls_asked(tiny_dir):
    require_browser()
    from voxport.bench import web_bench

    rows = web_bench.run([tiny_dir], dtypes=["fp32"], threads=[1], frames=4, warm_calls=10)
    (r,) = rows
    assert "error" not in r, r
    assert r["warm_after_codec_calls"] >= 10 and r["frames"] >= 1  # one call a frame: at least 3 utterances
    for k in ("ms_per_frame", "codec_ms_per_frame", "first_audio_ms", "prefill_ms"):
        assert r[f"warm_{k}"] > 0, r
    assert f"(warm: {r['warm_ms_per_frame']} / {r['warm_codec_ms_per_frame']} / {r['warm_first_audio_ms']})" in \
        web_bench.markdown(rows)
    cold = web_bench.run([tiny_dir], dtypes=["fp32"], threads=[1], frames=4)
    assert not any(k.startswith("warm_") for k in cold[0]) and "(warm:" not in web_bench.markdown(cold)
