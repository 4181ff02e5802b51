"""Orpheus end-to-end parity cases: the ONNX runtime against transformers' generate (with a logits
processor allowing each in-frame position its own ids, as the frame graph samples), a step-by-step
PyTorch sampler on the same noise, the `snac` package's decode on the same noise, and canopy's
windowed streaming decode (canopyai/Orpheus-TTS decoder.py's rule, rewritten here on token ids)."""

from __future__ import annotations

import time

import numpy as np

from voxport.exporter.families.orpheus import codec
from voxport.exporter.families.orpheus.frame import head_rows
from voxport.exporter.families.orpheus.layout import POSITIONS, Layout
from voxport.exporter.parity_kit import TEXT, compare_codes, same
from voxport.exporter.spec import ParityRow
from voxport.runtime.codec_stream import CodecStream, codec_noise, codec_rng
from voxport.runtime.prompt import Utterance
from voxport.runtime.sampling import Sampling
from voxport.runtime.stream import Speech

SPEAKER = "tara"
DECODE_RTOL = 1e-4  # SNAC decode vs the package on the same noise (measured ~1e-6 on tiny)
STREAM_SNR_MIN_DB = 20.0  # streamed vs whole-utterance decode (measured 31.7 tiny, 34.9 at SNAC's dimensions)


# -- references ------------------------------------------------------------------------------------
def canopy_prompt(tokenizer, layout: Layout, text: str, speaker: str = SPEAKER) -> list[int]:
    """canopy's engine: start of human, the tokenized "{voice}: {text}" (with the tokenizer's BOS), end of
    turn, end of human, start of AI, start of speech."""
    b = layout.custom_base
    return [b + 3, *tokenizer.encode(f"{speaker}: {text}").ids, layout.eot_id, b + 4, b + 5, b + 1]


def allowed_processor(layout: Layout, start: int):
    """A transformers LogitsProcessor: the token at in-frame position p may only be one of position p's
    ids (position 0 also the stop id)."""
    import torch
    from transformers import LogitsProcessor

    masks = [head_rows(layout, p) for p in range(POSITIONS)]

    class Allowed(LogitsProcessor):
        def __call__(self, input_ids, scores):
            p = (input_ids.shape[1] - start) % POSITIONS
            mask = torch.full_like(scores, float("-inf"))
            mask[:, masks[p]] = 0.0
            return scores + mask

    return Allowed()


def tokens_to_codes(tokens, layout: Layout) -> np.ndarray:
    """Generated ids -> frames [F, 7] of codes; a stop at position 0 ends with a frame of code C."""
    c, out, frame = layout.codebook_size, [], []
    for i, t in enumerate(int(x) for x in tokens):
        p = i % POSITIONS
        if t == layout.stop_id:
            out.append([c] * POSITIONS)
            break
        frame.append(t - layout.audio_start - p * c)
        if p == POSITIONS - 1:
            out.append(frame)
            frame = []
    return np.array(out, np.int64).reshape(-1, POSITIONS)


def generate_constrained(lm, layout: Layout, prompt: list[int], frames: int, penalty: float, allowed: bool = True):
    import torch
    from transformers import LogitsProcessorList

    ids = torch.tensor([prompt])
    procs = LogitsProcessorList([allowed_processor(layout, len(prompt))] if allowed else [])
    with torch.no_grad():
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, repetition_penalty=penalty,
                          logits_processor=procs, max_new_tokens=POSITIONS * frames,
                          eos_token_id=layout.stop_id if allowed else None, pad_token_id=layout.stop_id,
                          temperature=None, top_p=None, top_k=None)
    return out[0, len(prompt):].numpy()


def torch_sampled(lm, layout: Layout, prompt: list[int], frames: int, s: Sampling, top_p: float, penalty: float,
                  seed: int) -> np.ndarray:
    """Token by token on the reference LM with transformers' processors (repetition penalty over every id
    so far, temperature, top-p), each position restricted to its ids, then Gumbel-max with the uniforms
    the runtime draws for that frame (the same generator, seed and shape)."""
    import torch
    from transformers import DynamicCache, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    c = layout.codebook_size
    rng = np.random.default_rng(seed)
    rep, temp = RepetitionPenaltyLogitsProcessor(penalty), TemperatureLogitsWarper(s.temperature)
    topp = TopPLogitsWarper(top_p) if top_p < 1 else None
    ids, cache, out = torch.tensor([prompt]), DynamicCache(config=lm.config), []
    with torch.no_grad():
        logits = lm(ids, past_key_values=cache, use_cache=True).logits[:, -1]
        for _ in range(frames):
            noise = rng.random((1, POSITIONS, c + 1), dtype=np.float32)
            frame = []
            for p in range(POSITIONS):
                rows = head_rows(layout, p)
                scores = temp(ids, rep(ids, logits)[:, rows])
                scores = topp(ids, scores) if topp else scores
                u = torch.from_numpy(noise[0, p, :len(rows)]).clamp(1e-20, 1.0 - 1e-7)
                code = int((scores[0] - torch.log(-torch.log(u))).argmax())
                frame.append(code)
                if p == 0 and code == c:
                    return np.array([*out, [c] * POSITIONS], np.int64)
                tok = torch.tensor([[rows[code]]])
                ids = torch.cat([ids, tok], dim=1)
                logits = lm(tok, past_key_values=cache, use_cache=True).logits[:, -1]
            out.append(frame)
    return np.array(out, np.int64).reshape(-1, POSITIONS)


def package_decode(snac, codes: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The `snac` package's decode of frames [F, 7] with this noise [1, F, N] in its NoiseBlocks."""
    import torch

    with torch.no_grad(), codec.given_noise(snac, torch.from_numpy(noise)):
        return snac.decode(codec.levels(torch.from_numpy(codes.T[None].copy())))[0, 0].numpy()


def canopy_stream(snac, tokens, layout: Layout, noise_for) -> list[np.ndarray]:
    """canopy's decoder.py on generated ids: keep audio ids as codes (id - first audio id - position *
    4096), and whenever the count is a multiple of 7 above 27, decode the last 28 (4 frames) and keep
    samples 2048:4096. noise_for(window index) gives each decode's noise [1, 4, N]."""
    buffer, out = [], []
    for t in tokens:
        code = int(t) - layout.audio_start - (len(buffer) % POSITIONS) * layout.codebook_size
        if code < 0:
            continue
        buffer.append(code)
        if len(buffer) % POSITIONS == 0 and len(buffer) > 27:
            window = np.array(buffer[-28:], np.int64).reshape(4, POSITIONS)
            audio = package_decode(snac, window, noise_for(len(out)))
            out.append(audio[2048:4096])
    return out


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err))


# -- cases -----------------------------------------------------------------------------------------
def speech_codes(rt, frames: int, sampling: Sampling, seed: int = 0) -> np.ndarray:
    speech = Speech(rt, TEXT, speaker=SPEAKER, max_frames=frames, sampling=sampling, seed=seed)
    for _ in speech:
        pass
    return np.stack(speech.codes)


def reference(rt, family, frames: int, progress) -> dict:
    """PyTorch's side of the cases (no onnxruntime session): canopy's prompt, transformers' greedy
    generate with and without the allowed ids, the step-by-step sampler; and the small SNAC model,
    which the decode cases run on the ONNX codes."""
    from tokenizers import Tokenizer

    m = family.model
    lm, layout = m.lm, m.layout
    prompt = canopy_prompt(Tokenizer.from_file(str(m.tokenizer_file)), layout, TEXT)
    group = rt.contract.group(0)["defaults"]
    penalty = group["repetition_penalty"]
    s = Sampling(group["temperature"], group["top_k"], penalty, group["top_p"])
    n = min(frames, 24)
    progress(f"parity: greedy, {frames} frames: transformers.generate (allowed ids per position)")
    greedy = tokens_to_codes(generate_constrained(lm, layout, prompt, frames, penalty), layout)
    progress("parity: unconstrained greedy generate: how often it leaves the allowed ids")
    free = generate_constrained(lm, layout, prompt, frames, penalty, allowed=False)
    bad = [i for i, t in enumerate(free) if int(t) not in set(head_rows(layout, i % POSITIONS))]
    progress(f"parity: sampling (T {s.temperature}, top-p {s.top_p}, penalty {penalty}), {n} frames: PyTorch "
             "on the runtime's noise")
    sampled = torch_sampled(lm, layout, prompt, n, s, s.top_p, penalty, 1234)
    return {"prompt": prompt, "greedy": greedy, "sampling": s, "sampled_frames": n, "sampled": sampled,
            "unconstrained": {"tokens": int(len(free)), "outside_allowed": len(bad),
                              "fraction": len(bad) / max(1, len(free)), "first_outside": bad[0] if bad else None},
            "snac": m.snac, "layout": layout}


def compare(rt, ref: dict, frames: int, progress) -> dict:
    """The ONNX side against `ref`: each case's numbers by name."""
    snac, layout = ref["snac"], ref["layout"]
    ours = rt.prompts.build([Utterance(TEXT, SPEAKER)])[0][0].tolist()
    results = {"prompt_ids": {"ok": ours == ref["prompt"], "tokens": len(ref["prompt"])},
               "unconstrained": ref["unconstrained"]}
    progress(f"parity: greedy, {frames} frames, ONNX")
    got = speech_codes(rt, frames, Sampling(0.0, 1))
    results["greedy"] = compare_codes(ref["greedy"], got)
    s, n = ref["sampling"], ref["sampled_frames"]
    progress(f"parity: sampling, {n} frames, ONNX on two seeds")
    sampled = speech_codes(rt, n, s, seed=1234)
    other = speech_codes(rt, n, s, seed=1235)
    results["sampled"] = {**compare_codes(ref["sampled"], sampled),
                          "other_seed_differs": bool(not np.array_equal(sampled, other))}

    audio_codes = got[: len(got) - int(rt.contract.is_stop(got[-1]))] if len(got) else got
    progress(f"parity: SNAC decode of {len(audio_codes)} frames vs the snac package on the same noise")
    seed = 7
    whole = rt.decode(audio_codes, seed)
    noise = codec_noise(rt.codec["noise"], codec_rng(seed), len(audio_codes))[rt.codec["noise"]["input"]]
    pkg = package_decode(snac, audio_codes, noise)
    rel = float(np.abs(whole - pkg).max() / np.abs(pkg).max())
    results["snac_decode"] = {"frames": int(len(audio_codes)), "rel": rel, "allowed_rel": DECODE_RTOL,
                              "ok": bool(rel <= DECODE_RTOL)}

    progress("parity: canopy's windowed streaming decode vs the snac_window graph, same noise per window")
    per = rt.codec["noise"]["per_frame"]
    window_noise = np.random.default_rng(3).standard_normal((max(1, len(audio_codes)), 1, 4, per), dtype=np.float32)
    tokens = [layout.audio_id(p, int(cd)) for f in audio_codes for p, cd in enumerate(f)]
    ref_w = canopy_stream(snac, tokens, layout, lambda i: window_noise[i])
    sess = rt.graphs.session(rt.codec["window"])
    got_w = [sess.run(None, {"audio_codes": audio_codes[i:i + 4].T[None], "codec_noise": window_noise[i]})[0][0, 0]
             for i in range(len(ref_w))]
    wrel = max((float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(ref_w, got_w)), default=0.0)
    results["window_decode"] = {"windows": len(ref_w), "worst_rel": wrel, "allowed_rel": DECODE_RTOL,
                                "ok": bool(len(ref_w) > 0 and wrel <= DECODE_RTOL)}

    progress("parity: streamed decode (the runtime's snac_stream) vs the whole-utterance decode, same noise")
    stream = CodecStream(rt.graphs, rng=codec_rng(seed))
    t0 = time.perf_counter()
    parts = [stream.decode(f[None]) for f in audio_codes]
    parts.append(stream.flush())
    streamed = np.concatenate(parts)
    snr = snr_db(whole, streamed[: len(whole)]) if len(streamed) == len(whole) else float("-inf")
    results["streamed_decode"] = {"frames": int(len(audio_codes)), "snr_db": snr, "min_db": STREAM_SNR_MIN_DB,
                                "samples": [int(len(streamed)), int(len(whole))],
                                "delay_frames": stream.delay, "ms_per_call": 1000 * (time.perf_counter() - t0) / len(parts),
                                "ok": bool(snr >= STREAM_SNR_MIN_DB)}
    return results


def rows(r: dict) -> list[ParityRow]:
    g, u, sm, d, w, st = (r[k] for k in ("greedy", "unconstrained", "sampled", "snac_decode", "window_decode",
                                         "streamed_decode"))
    return [
        ParityRow("prompt_ids", r["prompt_ids"]["ok"], f"canopy's format, {r['prompt_ids']['tokens']} ids: "
                  f"{'equal' if r['prompt_ids']['ok'] else 'DIFFER'}", r["prompt_ids"]),
        ParityRow("greedy", g["identical"], f"{same(g)} to transformers.generate (allowed ids per position) over "
                  f"{g['frames_reference']} frames", g,
                  f"greedy: codes differ from transformers at frame {g['first_mismatch_frame']}"),
        ParityRow("unconstrained", True, f"unconstrained greedy generate left the allowed ids at {u['outside_allowed']} "
                  f"of {u['tokens']} tokens (reported, not gated)", u),
        ParityRow("sampled", sm["identical"] and sm["other_seed_differs"],
                  f"T/top-p/penalty as the model, {sm['frames_reference']} frames, same noise: {same(sm)} to PyTorch; "
                  f"another seed differs: {sm['other_seed_differs']}", sm),
        ParityRow("snac_decode", d["ok"], f"{d['frames']} frames vs the snac package, same noise: relative "
                  f"{d['rel']:.2e} (allowed {d['allowed_rel']:.0e})", d),
        ParityRow("window_decode", w["ok"], f"{w['windows']} windows of canopy's streaming decode, same noise: worst "
                  f"relative {w['worst_rel']:.2e} (allowed {w['allowed_rel']:.0e})", w),
        ParityRow("streamed_decode", st["ok"], f"snac_stream ({st['delay_frames']} frames look-ahead) vs the whole "
                  f"decode, {st['frames']} frames: SNR {st['snr_db']:.1f} dB (gate {st['min_db']:.0f})", st),
    ]


def reference_generate(family, text: str, frames: int, device: str):
    """transformers' generate, greedy with the allowed ids per position and the model's repetition
    penalty: (codes, wall time per frame, SNAC decode with fresh noise)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import LogitsProcessorList

    from voxport.exporter.families.orpheus import DEFAULTS

    m = family.model
    layout = m.layout
    prompt = canopy_prompt(Tokenizer.from_file(str(m.tokenizer_file)), layout, text)
    marks = []

    class Clock:
        def put(self, value):
            marks.append(time.perf_counter())

        def end(self):
            pass

    ids = torch.tensor([prompt])
    t0 = time.perf_counter()
    with torch.no_grad():
        out = m.lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                            repetition_penalty=DEFAULTS["repetition_penalty"],
                            logits_processor=LogitsProcessorList([allowed_processor(layout, len(prompt))]),
                            max_new_tokens=POSITIONS * frames, eos_token_id=layout.stop_id,
                            pad_token_id=layout.stop_id, streamer=Clock())
    per_token = [t0, *marks[1:]]  # the first put is the prompt
    frame_marks = per_token[::POSITIONS]
    codes = tokens_to_codes(out[0, len(prompt):].numpy(), layout)

    def decode(codes):
        with torch.no_grad():
            return m.snac.decode(codec.levels(torch.as_tensor(codes).T[None].clamp(0, layout.codebook_size - 1)))

    return codes, [b - a for a, b in zip(frame_marks, frame_marks[1:])], decode
