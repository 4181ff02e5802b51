"""Generated command lines, run in-process through voxport.cli.main: each ends in exit 0 (it was
valid) or exit 2 with one error line (argparse's usage line before it), never a traceback."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxport.cli import main
from voxport.errors import VoxportError

EXAMPLES = 500
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

# argv is str; bytes that are not UTF-8 arrive as lone surrogates (surrogateescape)
words = st.text(max_size=30) | st.sampled_from(["\udce9", "caf\udcc3", "-1", "--", "-", "", " ", "0", "1e9",
                                                 "nan", "inf", "9" * 50, "-9" * 20])
numbers = st.integers(-3, 5).map(str) | st.sampled_from(["-1", "0", "1", "70000", "2e3", "x", "nan", "inf",
                                                          "-inf", str(2 ** 64), "0.5", ""]) | words


@pytest.fixture(scope="module")
def places(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "file.txt").write_text("not an artifact")
    (root / "notes").mkdir()
    (root / "notes" / "keep.md").write_text("mine")
    (root / "bad").mkdir()
    (root / "bad" / "manifest.json").write_text(json.dumps({"format_version": 3}))
    (root / "deep").mkdir()
    (root / "deep" / "manifest.json").write_text("[" * 50000)
    (root / "ref.wav").write_bytes(b"RIFF not really")
    return {"tiny": str(tiny_dir), "root": root, "dirs": [str(tiny_dir), str(root / "bad"), str(root / "deep"),
                                                          str(root / "notes"), str(root / "file.txt"),
                                                          str(root / "missing"), "/proc", ""]}


@pytest.fixture(scope="module")
def cheap(places):
    """Valid runs stay cheap: the runtime is opened once per (directory, precision) and shared, as the
    server shares it; export and parity stop where their work would begin; serve does not listen;
    verify hashes files but skips the ONNX checker."""
    import voxport.exporter.export
    import voxport.runtime.runtime as runtime_mod
    import voxport.serve
    import voxport.validation.harness
    import voxport.verify

    mp = pytest.MonkeyPatch()
    real, cache = runtime_mod.Runtime, {}

    def runtime(d, *a, dtype="fp32", **k):
        if (str(d), dtype) not in cache:
            cache[(str(d), dtype)] = real(d, *a, dtype=dtype, **k)
        return cache[(str(d), dtype)]

    def reached(what):
        def stop(*a, **k):
            raise VoxportError(f"reached {what}")
        return stop

    mp.setattr(runtime_mod, "Runtime", runtime)
    mp.setattr(voxport.exporter.export, "export", reached("export"))
    mp.setattr(voxport.validation.harness, "run", reached("parity"))
    mp.setattr(voxport.serve.Server, "serve_forever", lambda self: None)
    mp.setattr(voxport.verify, "_check_graph", lambda *a: [])  # the ONNX checker: seconds, and no argument
    yield
    mp.undo()


def _run(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.TextIOWrapper(io.BytesIO())
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, err.getvalue()


def _check(argv, rc, err) -> None:
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        lines = err.strip("\n").split("\n")
        last = lines[-1]
        assert last.startswith("voxport") and ": error: " in last, (argv, err)
        assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), (argv, err)  # argparse's usage


def speak_args(places):
    root = places["root"]
    flags = st.lists(st.one_of(
        st.tuples(st.sampled_from(["--max-frames", "--chunk-frames", "--seed", "--top-k", "--temperature",
                                   "--top-p", "--repetition-penalty", "--speaker"]), numbers),
        st.tuples(st.sampled_from(["--language", "--instruct", "--dtype", "--ref-text"]),
                  words | st.sampled_from(["fp32", "q4", "q8", "english", "auto"])),
        st.tuples(st.sampled_from(["-o", "--codes-out", "--stats-json", "--ref-audio"]),
                  st.sampled_from([str(root / "o.wav"), str(root / "o.json"), str(root / "notes"), "-",
                                   str(root / "missing" / "x.wav"), str(root / "o.xyz"), "/proc/x.wav",
                                   str(root / "ref.wav"), "./o.wav"])),
        st.tuples(st.sampled_from(["--greedy", "--stream", "--step-graphs"])),
    ), max_size=5).map(lambda fs: [x for f in fs for x in f])
    return st.tuples(st.just("speak"), st.sampled_from(places["dirs"]), words, flags).map(
        lambda t: [t[0], t[1], t[2], "--max-frames", "2", *t[3]])


def other_args(places):
    root = places["root"]
    dirs = st.sampled_from(places["dirs"])
    return st.one_of(
        st.tuples(st.just("verify"), dirs, st.lists(st.tuples(st.just("--dtypes"), words | st.just("fp32,q4")),
                                                     max_size=1)),
        st.tuples(st.just("parity"), dirs, st.lists(st.tuples(st.sampled_from(["--frames", "--dtypes", "--device"]),
                                                               numbers | st.sampled_from(["cpu", "all"])), max_size=2)),
        st.tuples(st.just("serve"), dirs, st.lists(st.tuples(
            st.sampled_from(["--port", "--host", "--api-key", "--max-streams", "--dtype", "--threads",
                             "--allow-origin", "--allow-host", "--public-path", "--send-timeout", "--header-timeout",
                             "--max-connections", "--idle-timeout"]),
            numbers | st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "localhost", "http://a.b", "/models/",
                                       "k3y", " ", "fp32", "q4"])), max_size=3)),
        st.tuples(st.just("export"), st.sampled_from(["tiny", "qwen3-tts-tiny", "nope", str(root / "notes"), ""]),
                  st.lists(st.tuples(st.sampled_from(["-o", "--dtypes", "--device"]),
                                     st.sampled_from([str(root / "notes"), str(root / "file.txt"), "/proc/x",
                                                      str(root / "new"), "fp32", "q5", "cuda", ""]) | words),
                           max_size=2)),
    ).map(lambda t: [t[0], t[1], *[x for f in t[2] for x in f]])


def test_generated_speak_command_lines(places, cheap):
    outcomes = []

    @SETTINGS
    @given(argv=speak_args(places))
    def run(argv):
        rc, err = _run(argv)
        _check(argv, rc, err)
        outcomes.append(rc)
        assert (places["root"] / "notes" / "keep.md").read_text() == "mine"

    run()
    assert len(outcomes) >= EXAMPLES and {0, 2} <= set(outcomes)


def test_generated_other_command_lines(places, cheap):
    outcomes = []

    @SETTINGS
    @given(argv=other_args(places))
    def run(argv):
        rc, err = _run(argv)
        _check(argv, rc, err)
        outcomes.append((argv[0], rc))
        assert (places["root"] / "notes" / "keep.md").read_text() == "mine"
        assert (places["root"] / "file.txt").read_text() == "not an artifact"

    run()
    assert len(outcomes) >= EXAMPLES and {c for c, _ in outcomes} == {"verify", "parity", "serve", "export"}
