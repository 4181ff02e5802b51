"""`voxport` command line. Imports are lazy: `speak` must never load torch."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from voxport.errors import VoxportError
from voxport.fsutil import cache_root


def _export(a) -> int:
    from voxport.fsutil import check_dir_target
    from voxport.manifest import is_artifact_dir

    if a.output:  # before torch is even imported, and before the checkpoint loads (minutes for a large one)
        check_dir_target(Path(a.output), is_artifact_dir, "-o/--output")
    from voxport.exporter.export import check_output, export
    from voxport.exporter.presets import all_presets

    name = a.model if a.model in all_presets() else Path(a.model).name
    out = Path(a.output) if a.output else Path("artifacts") / name
    check_output(out)
    export(a.model, out, device=a.device, progress=lambda m: print(m, file=sys.stderr, flush=True), dtypes=a.dtypes,
           parts={"tokenizer": a.tokenizer, "codec": a.codec})
    print(out)
    return 0


def _verify(a) -> int:
    from voxport import dtypes as dt
    from voxport.verify import verify

    wanted = [dt.check(d.strip()) for d in a.dtypes.split(",")] if a.dtypes else None
    problems = verify(Path(a.dir), wanted)
    if problems:
        print(f"voxport verify: {a.dir}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    print(f"verify OK: {a.dir}")
    return 0


def _parity(a) -> int:
    from voxport import manifest as mf
    from voxport.validation.harness import run

    if a.frames < 1:
        raise VoxportError(f"--frames must be >= 1, got {a.frames}")
    mf.load(Path(a.dir))  # a damaged manifest is one line before any model loads

    progress = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    fidelity_ok = True
    if a.dtypes != "fp32":  # the variants' gates first (every variant hash-checked before torch loads)
        from voxport.validation.fidelity import run as fidelity

        f = fidelity(Path(a.dir), a.dtypes, device=a.device, frames=min(a.frames, 20), progress=progress)
        print(f"fidelity {'PASS' if f['ok'] else 'FAIL'} for {', '.join(f['dtypes'])}: worst SNR margin "
              f"{f['worst']}; report: {Path(a.dir) / 'fidelity.md'}")
        for line in f["failures"]:
            print(f"  FAIL {line}", file=sys.stderr)
        fidelity_ok = f["ok"]
    r = run(Path(a.dir), device=a.device, frames=a.frames, progress=progress)
    worst = max(r["graphs"], key=lambda c: c["rel"])
    print(f"parity {'PASS' if r['ok'] else 'FAIL'}: {len(r['graphs'])} graph checks "
          f"(worst relative error {worst['rel']:.2e} in {worst['graph']}.{worst['output']}), "
          f"{sum(row['ok'] for row in r['rows'])}/{len(r['rows'])} end-to-end cases pass; report: {Path(a.dir) / 'parity.md'}")
    for row in r["rows"]:
        print(f"  {'ok  ' if row['ok'] else 'FAIL'} {row['name']}: {row['summary']}")
    for f in r["failures"]:
        print(f"  FAIL {f}", file=sys.stderr)
    return 0 if r["ok"] and fidelity_ok else 1


def _check_args(a) -> None:
    """What speak can refuse from its arguments alone, before anything loads."""
    from voxport.errors import InputError
    from voxport.runtime.chunking import check_utf8

    check_utf8(a.text, "text")
    if a.ref_text is not None:
        check_utf8(a.ref_text, "--ref-text")
    if not 0 <= a.seed < 2 ** 63:
        raise InputError(f"--seed must be between 0 and 2**63 - 1, got {a.seed}")
    if a.max_frames is not None and a.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {a.max_frames}")
    a.chunk_frames = _frame_counts(a.chunk_frames)
    if bool(a.ref_audio) != bool(a.ref_text):
        raise InputError("--ref-audio and --ref-text go together: the reference audio and its transcript")


def _check_outputs(a) -> None:
    """Every file speak will write, checked before anything is loaded or generated."""
    from voxport.runtime.audio import output_format
    from voxport.fsutil import check_writable, same_files

    same_files({"-o/--output": a.output, "--codes-out": a.codes_out, "--stats-json": a.stats_json})
    if a.output == "-" and a.step_graphs:
        raise VoxportError("-o - (raw PCM on stdout) streams; it needs the fused graph, not --step-graphs")
    if a.output != "-":
        check_writable(Path(a.output))
        output_format(Path(a.output))
    for flag, path in (("--codes-out", a.codes_out), ("--stats-json", a.stats_json)):
        if path:
            check_writable(Path(path), flag)


def _speak(a) -> int:
    from voxport.fsutil import atomic_file
    from voxport.runtime.runtime import Runtime
    from voxport.runtime.sampling import Sampling

    _check_args(a)
    _check_outputs(a)
    rt = Runtime(Path(a.dir), dtype=a.dtype)
    sampling = (Sampling(repetition_penalty=a.repetition_penalty) if a.greedy
                else Sampling(a.temperature, a.top_k, a.repetition_penalty, a.top_p))
    speaker = rt.check_voice(a.speaker, a.language, a.instruct, reference=bool(a.ref_audio))
    context = [rt.reference(Path(a.ref_audio), a.ref_text, speaker)] if a.ref_audio else []
    kw = dict(speaker=speaker, context=context, max_frames=a.max_frames, sampling=sampling, seed=a.seed,
              language=a.language, instruct=a.instruct)
    if a.step_graphs:
        codes, stats = _speak_steps(rt, a, kw)
    else:
        codes, stats = _speak_stream(rt, a, kw)
    for flag, path, text in (("--codes-out", a.codes_out, lambda: json.dumps(codes.tolist())),
                             ("--stats-json", a.stats_json, lambda: json.dumps(stats, indent=2))):
        if path:  # beside the target and renamed: a full disk leaves the old file as it was
            with atomic_file(Path(path), flag) as f:
                f.write(text().encode())
    print(f"{a.output}: {stats['frames']} frames, {stats['audio_s']:.2f} s of audio in {stats['wall_s']:.2f} s"
          + (f", first audio after {stats['first_audio_s'] * 1000:.0f} ms" if stats.get("first_audio_s") else ""),
          file=sys.stderr)
    return 0


def _speak_steps(rt, a, kw):
    """The step graphs (a call per step: 33 per frame for CSM), whole utterance: for debugging and comparison."""
    from voxport.runtime.audio import write_wav

    res = rt.generate(a.text, **kw)
    write_wav(Path(a.output), res.audio, rt.rt["sample_rate"])
    s = res.stats
    return res.codes, {**s, "wall_s": s["generate_s"] + s["decode_s"], "first_audio_s": None}


def _speak_stream(rt, a, kw):
    """The fused frame graph: one call per frame; with --stream (or -o -) audio goes out per chunk."""
    import numpy as np

    from voxport.runtime.audio import PcmSink, write_wav
    from voxport.runtime.stream import Speech

    import time

    t = time.perf_counter()
    rt.load_streaming()  # hash check + session creation
    load_s = time.perf_counter() - t
    speech = Speech(rt, a.text, chunk_frames=a.chunk_frames, **kw)
    to_stdout = a.output == "-"
    chunks = iter(speech)
    if not (a.stream or to_stdout):
        pcm = [c for c in chunks]
        write_wav(Path(a.output), np.concatenate(pcm) if pcm else np.zeros(0, np.float32), rt.rt["sample_rate"])
    else:
        sink = PcmSink(sys.stdout.buffer if to_stdout else Path(a.output), rt.rt["sample_rate"])
        try:
            for pcm in chunks:
                sink.write(pcm)
        except BrokenPipeError:
            chunks.close()  # the listener went away: stop generating, no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print("voxport speak: output closed by the reader; stopped", file=sys.stderr)
        except BaseException:
            chunks.close()
            sink.abort()  # the partial file goes; an existing target stays as it was
            raise
        sink.close()
    codes = np.stack(speech.codes) if speech.codes else np.zeros((0, rt.rt["num_codebooks"]), np.int64)
    # first_audio_s counts from the start of generation; loading the graphs (once per process) is apart
    return codes, {**speech.stats, "load_s": round(load_s, 4), "utterance_texts": [u["text"] for u in speech.utterances]}


def _frame_counts(text: str | None) -> tuple[int, ...] | None:
    from voxport.runtime.stream import parse_chunk_frames

    return None if text is None else parse_chunk_frames(text, "--chunk-frames")


def _serve(a) -> int:
    from voxport.serve import serve

    serve([Path(d) for d in a.dirs], port=a.port, host=a.host, api_key=a.api_key or None,
          max_streams=a.max_streams, max_queue=a.max_queue, queue_timeout=a.queue_timeout, voices_dir=a.voices_dir,
          dtype=a.dtype, threads=a.threads, quiet=a.quiet, batching=not a.no_batching, context=a.context,
          batch_codec=not a.no_codec_batching, codec_threads=a.codec_threads, chunk_frames=_frame_counts(a.chunk_frames),
          allow_origins=a.allow_origin or [], allow_hosts=a.allow_host or [], public_paths=a.public_path or [],
          limits={k: getattr(a, k) for k in LIMIT_FLAGS})
    return 0


def _bench(a) -> int:
    from voxport.bench.suite import RESULTS, run

    from voxport import dtypes as dt
    from voxport.errors import InputError
    from voxport.exporter.presets import all_presets

    unknown = [p for p in a.preset or [] if p not in all_presets()]
    if unknown:
        raise InputError(f"unknown preset {unknown[0]!r}; presets: {', '.join(all_presets())}")
    dtypes = dt.parse(a.dtypes) if a.dtypes else None  # fp32 is always measured: the ratios need it
    path = run(a.preset or ["tiny"], dtypes=dtypes, quick=a.quick, frames=a.frames, threads=a.threads,
               device=a.device, browser=not a.no_browser, artifacts=Path(a.artifacts) if a.artifacts else None,
               out_dir=Path(a.out) if a.out else RESULTS, baseline=Path(a.baseline) if a.baseline else None)
    print(path)
    print(path.with_suffix(".md"))
    return 0


# serve's limits: flag, default, help (voxport/serve.py applies them)
LIMITS = [
    ("--header-timeout", 10.0, "seconds a connection may take to send a request's headers (default 10)"),
    ("--body-timeout", 30.0, "seconds a request may take to send its body (default 30)"),
    ("--send-timeout", 15.0, "seconds a client may stop reading a stream (HTTP or WebSocket) before it is "
     "dropped and its stream slot freed (default 15)"),
    ("--idle-timeout", 120.0, "seconds a WebSocket may stay silent while nothing is generating (default 120)"),
    ("--keep-alive-timeout", 5.0, "seconds an idle keep-alive connection stays open (default 5)"),
    ("--max-connections", 64, "open connections at most; past that, 503 (default 64)"),
]
LIMIT_FLAGS = [f[2:].replace("-", "_") for f, _, _ in LIMITS]


class _Parser(argparse.ArgumentParser):
    """argparse, with its error on one line even when it quotes an argument holding a newline."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="voxport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a checkpoint (preset, local directory or hub id) to ONNX")
    e.add_argument("model", help="a preset (tiny, marvis-250m, csm-1b, qwen3-tts-tiny, qwen3-tts-0.6b, ...), a "
                   "checkpoint directory, or a hub id")
    e.add_argument("-o", "--output", help="artifact directory (default: artifacts/<name>)")
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    e.add_argument("--dtypes", default="all", help="comma list of fp32,fp16,q8,q4,q4f16 (default: all)")
    e.add_argument("--tokenizer", metavar="DIR|HUB_ID", help="the text tokenizer, for a checkpoint that ships "
                   "without one (the original CSM / Marvis layout)")
    e.add_argument("--codec", metavar="DIR|HUB_ID", help="the audio codec (kyutai/mimi), for a checkpoint that "
                   "ships without one")
    e.set_defaults(func=_export)

    v = sub.add_parser("verify", help="check an artifact set against its manifest (hashes, ONNX checker, loads, I/O)")
    v.add_argument("dir")
    v.add_argument("--dtypes", help="only these variants (default: every variant in the manifest)")
    v.set_defaults(func=_verify)

    q = sub.add_parser("parity", help="check every graph and the generation against PyTorch")
    q.add_argument("dir")
    q.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of the PyTorch reference")
    q.add_argument("--frames", type=int, default=50, help="greedy frames compared end to end")
    q.add_argument("--dtypes", default="fp32", help="fp32 (default: exact parity), or a comma list / 'all': "
                   "also the fidelity gates of those variants (SNR vs fp32 PyTorch, code agreement)")
    q.set_defaults(func=_parity)

    s = sub.add_parser("speak", help="generate speech from the ONNX graphs alone (no torch)")
    s.add_argument("dir")
    s.add_argument("text")
    s.add_argument("-o", "--output", default="out.wav", help="WAV file, or - for raw 16-bit mono PCM on stdout")
    s.add_argument("--stream", action="store_true", help="write audio as it is produced (the WAV grows per chunk)")
    s.add_argument("--chunk-frames", metavar="N[,N...]",
                   help="frames per audio chunk when streaming, or a schedule (e.g. 1,4: the first chunk after one "
                   "frame, then four at a time); default: the model's chunk schedule in its manifest")
    s.add_argument("--stats-json", help="write timing figures (first audio, real-time factor, stages) as JSON")
    s.add_argument("--step-graphs", action="store_true",
                   help="use the step graphs (a call per codebook) instead of the fused frame graph")
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--temperature", type=float, help="default: the model's own (its manifest)")
    s.add_argument("--top-k", type=int, help="default: the model's own (its manifest)")
    s.add_argument("--top-p", type=float, help="keep the most likely codes that together hold this probability, "
                   "in (0, 1] (default: the model's own; 1 = none)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-frames", type=int,
                   help="per utterance (default: the model's own, its manifest; long text is split into utterances)")
    s.add_argument("--speaker", help="a speaker of the model (CSM: an integer, default 0; a named-speaker "
                   "model: one of its names, default its first)")
    s.add_argument("--language", help="language, where the model takes one (default: auto)")
    s.add_argument("--instruct", help="a style instruction, where the model takes one")
    s.add_argument("--repetition-penalty", type=float,
                   help="where the model applies one (default: the model's own, e.g. 1.05 for Qwen3-TTS)")
    s.add_argument("--ref-audio", help="reference audio to clone the voice of (any common format)")
    s.add_argument("--ref-text", help="transcript of --ref-audio")
    s.add_argument("--codes-out", help="also write the generated codes as JSON")
    s.add_argument("--dtype", default="fp32", help="precision variant: fp32, fp16, q8, q4, q4f16")
    s.set_defaults(func=_speak)

    b = sub.add_parser("bench", help="voxport vs PyTorch side by side: per-frame time, RTF, first audio, memory")
    b.add_argument("--preset", action="append", metavar="PRESET",
                   help="repeatable (default: tiny); exported to artifacts/<preset> when missing")
    b.add_argument("--artifacts", help="use this artifact directory for the (single) preset")
    b.add_argument("--quick", action="store_true", help="fp32 and q4, fewer frames, no browser (< 2 min on tiny)")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    b.add_argument("--dtypes", help="comma list (default: all five; --quick: fp32,q4)")
    b.add_argument("--frames", type=int, help="frames per timed generation (default 24; --quick 10)")
    b.add_argument("--threads", type=int, default=0, help="threads for PyTorch and onnxruntime (default: all cores)")
    b.add_argument("--no-browser", action="store_true", help="skip the headless-Chromium runs")
    b.add_argument("--baseline", help="an earlier export of the (single) preset: its fused path is timed "
                   "against this one, interleaved in one process")
    b.add_argument("--out", help="results directory (default: bench/results)")
    b.set_defaults(func=_bench)

    v = sub.add_parser("serve", help="serve the browser demo, the artifact directories and the speech API")
    v.add_argument("dirs", nargs="*", metavar="DIR", help="artifact directories (default: every one under ./artifacts)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --api-key")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--api-key", default=os.environ.get("VOXPORT_API_KEY"),
                   help="require Authorization: Bearer KEY on /v1/ (default: $VOXPORT_API_KEY)")
    v.add_argument("--max-streams", type=int, default=4, help="streams generating at once (HTTP and WebSocket)")
    v.add_argument("--max-queue", type=int, default=8,
                   help="requests that may wait for a busy stream slot, first come first served (default 8); "
                   "past that, 503 with Retry-After")
    v.add_argument("--queue-timeout", type=float, default=10.0,
                   help="seconds a request waits for a slot before its 503 (default 10)")
    v.add_argument("--voices-dir", default=str(cache_root() / "voices"),
                   help="where saved voices live (default: $VOXPORT_CACHE/voices, ~/.cache/voxport/voices)")
    v.add_argument("--dtype", default="fp32", help="precision when a request's model names none (NAME:q4 does)")
    v.add_argument("--threads", type=int, default=1,
                   help="onnxruntime threads per session (default 1: concurrent streams give the parallelism; "
                   "0: all cores)")
    v.add_argument("--chunk-frames", metavar="N[,N...]",
                   help="frames per audio chunk, or a schedule: the i-th chunk of an utterance has the i-th "
                   "count, the last repeating (e.g. 1,4: the first byte after one frame, then fewer, larger "
                   "codec calls); default: the model's chunk schedule in its manifest")
    v.add_argument("--codec-threads", type=int, metavar="N",
                   help="onnxruntime threads of the streaming codec's session (default: --threads); e.g. "
                   "--threads 2 --codec-threads 1: frame calls on every core, the codec thread on one")
    v.add_argument("--no-batching", action="store_true",
                   help="run each stream's frames in its own batch-1 loop instead of one batched frame call per "
                   "step for all streams of a model (for comparison)")
    v.add_argument("--no-codec-batching", action="store_true",
                   help="with batching, each stream runs its own codec calls in its own thread instead of one "
                   "codec call per step for all streams (for comparison)")
    v.add_argument("--context", type=int, metavar="POSITIONS",
                   help="cache positions per stream (prompt + generated frames; default: the model's whole "
                   "context). Longer texts are spoken as several utterances; each batching slot holds this many. "
                   "Give it for a model whose context is far longer than an utterance (a 3B Llama's 131,072 "
                   "positions are ~15 GB of cache per slot)")
    v.add_argument("--quiet", action="store_true", help="no per-request log lines")
    v.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="repeatable: another web origin (e.g. http://localhost:3000) whose pages may POST, DELETE "
                   "and open the WebSocket; by default only the server's own page may")
    v.add_argument("--allow-host", action="append", metavar="NAME",
                   help="repeatable: another name the server may be reached by (the Host header); by default "
                   "loopback names and the --host address (any name when it listens on 0.0.0.0 or ::)")
    v.add_argument("--public-path", action="append", metavar="PREFIX",
                   help="repeatable, with --api-key: a URL prefix served without the key (e.g. /models/tiny/ "
                   "and /api/models for the page); by default only the page's own files and /healthz")
    for flag, default, text in LIMITS:
        v.add_argument(flag, type=float if "timeout" in flag else int, default=default, help=text)
    v.set_defaults(func=_serve)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM as an interrupt: Python's default for it is to die at once, which left an export's
    half-written `.partial` directory behind (1.4 GB seen); raised instead, the same cleanup as Ctrl-C
    runs. `serve` is unaffected: uvicorn installs its own handler for a graceful shutdown."""


def _terminated(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _run(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    try:
        return args.func(args)
    except VoxportError as e:
        print(f"voxport {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the machine's refusal (permissions, a full disk) of a file the user named
        where = f": {e.filename}" if e.filename else ""
        print(f"voxport {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"voxport {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"voxport {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    # a message may quote user input (a path, a word): never let it break the one-line promise
    return " ".join(message.split()) if "\n" in message or "\r" in message else message


if __name__ == "__main__":
    sys.exit(main())
