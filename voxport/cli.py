"""`voxport` command line. Imports are lazy: `speak` must never load torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voxport.errors import VoxportError


def _export(a) -> int:
    from exporter.export import export
    from exporter.presets import PRESETS

    out = Path(a.output) if a.output else Path("artifacts") / (a.model if a.model in PRESETS else Path(a.model).name)
    export(a.model, out, device=a.device, progress=lambda m: print(m, file=sys.stderr, flush=True), dtypes=a.dtypes)
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
    from validation.harness import run

    progress = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    fidelity_ok = True
    if a.dtypes != "fp32":  # the variants' gates first (every variant hash-checked before torch loads)
        from validation.fidelity import run as fidelity

        f = fidelity(Path(a.dir), a.dtypes, device=a.device, frames=min(a.frames, 20), progress=progress)
        print(f"fidelity {'PASS' if f['ok'] else 'FAIL'} for {', '.join(f['dtypes'])}: worst SNR margin "
              f"{f['worst']}; report: {Path(a.dir) / 'fidelity.md'}")
        for line in f["failures"]:
            print(f"  FAIL {line}", file=sys.stderr)
        fidelity_ok = f["ok"]
    r = run(Path(a.dir), device=a.device, frames=a.frames, progress=progress)
    g, w = r["greedy"], r["waveform"]
    worst = max(r["graphs"], key=lambda c: c["rel"])
    print(f"parity {'PASS' if r['ok'] else 'FAIL'}: {len(r['graphs'])} graph checks "
          f"(worst relative error {worst['rel']:.2e} in {worst['graph']}.{worst['output']}), "
          f"greedy codes {'identical' if g['identical'] else 'DIFFER'} over {g['frames_reference']} frames, "
          f"voice prompt {'identical' if r['voice_prompt']['identical'] else 'DIFFERS'}, "
          f"waveform relative error {w['rel']:.2e}; report: {Path(a.dir) / 'parity.md'}")
    for f in r["failures"]:
        print(f"  FAIL {f}", file=sys.stderr)
    return 0 if r["ok"] and fidelity_ok else 1


def _speak(a) -> int:
    from runtime.audio import write_wav
    from runtime.csm import CsmRuntime
    from runtime.sampling import Sampling

    rt = CsmRuntime(Path(a.dir), dtype=a.dtype)
    sampling = Sampling() if a.greedy else Sampling(a.temperature, a.top_k)
    context = []
    if a.ref_audio or a.ref_text:
        if not (a.ref_audio and a.ref_text):
            raise VoxportError("--ref-audio and --ref-text go together: the reference audio and its transcript")
        context.append(rt.reference(Path(a.ref_audio), a.ref_text, a.speaker))
    res = rt.generate(a.text, speaker=a.speaker, context=context, max_frames=a.max_frames,
                      sampling=sampling, seed=a.seed)
    write_wav(Path(a.output), res.audio, rt.rt["sample_rate"])
    if a.codes_out:
        Path(a.codes_out).write_text(json.dumps(res.codes.tolist()))
    s = res.stats
    print(f"{a.output}: {s['frames']} frames, {s['audio_s']:.2f} s of audio in {s['generate_s'] + s['decode_s']:.2f} s",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a checkpoint (preset, local directory or hub id) to ONNX")
    e.add_argument("model", help="preset (tiny, marvis-250m, csm-1b), checkpoint directory, or hub id")
    e.add_argument("-o", "--output", help="artifact directory (default: artifacts/<name>)")
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    e.add_argument("--dtypes", default="all", help="comma list of fp32,fp16,q8,q4,q4f16 (default: all)")
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
    s.add_argument("-o", "--output", default="out.wav")
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--temperature", type=float, default=0.9)
    s.add_argument("--top-k", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-frames", type=int, default=125, help="at 12.5 frames/s: 125 = 10 s")
    s.add_argument("--speaker", type=int, default=0)
    s.add_argument("--ref-audio", help="reference audio to clone the voice of (any common format)")
    s.add_argument("--ref-text", help="transcript of --ref-audio")
    s.add_argument("--codes-out", help="also write the generated codes as JSON")
    s.add_argument("--dtype", default="fp32", help="precision variant: fp32, fp16, q8, q4, q4f16")
    s.set_defaults(func=_speak)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VoxportError as e:
        print(f"voxport {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"voxport {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
