"""Qwen3-TTS end-to-end parity cases: the torch-free runtime against the reference package's own
generate (qwen-tts-hf), on one reference model (the graphs were checked shape by shape before this).

The reference builds its talker prompt in PyTorch from ids; the runtime builds it from the manifest
(runtime/prompt.py, "dual_track"). The prompt cases compare the two embeddings directly, caught at the
reference's talker.generate, for every variant of the recipe: speaker + language, instruction with
language auto, a dialect speaker, and a cloned voice whose reference text is longer / shorter than
its codes."""

from __future__ import annotations

import numpy as np

TEXT = "Hello there! The quick brown fox jumps over the lazy dog, one frame at a time."
REF_TEXT = "She sells sea shells by the sea shore."
PROMPT_ATOL = 1e-5  # embeddings: a gather, a projection and sums (measured 1e-6 on tiny)


class _Captured(Exception):
    pass


def reference_prompt(model, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The talker prompt and trailing text the reference's generate builds (captured, not generated)."""
    seen = {}

    def capture(**kw):
        seen.update(kw)
        raise _Captured

    model.talker.generate = capture
    try:
        model.generate(**kwargs)
    except _Captured:
        pass
    finally:
        del model.talker.generate
    return seen["inputs_embeds"][0].numpy(), seen["trailing_text_hidden"][0].numpy()


def _ids(rt, template: str, text: str):
    import torch

    return torch.tensor([rt.prompts._ids(template, text)])


def reference_codes(rt, model, text: str, speaker, language: str, frames: int, instruct: str | None = None,
                    voice=None) -> np.ndarray:
    """Greedy codes of the reference generate: frames completed before eos (it completes
    max_new_tokens - 1 frames when no eos comes first)."""
    spec = rt.rt["generation"]["prompt"]
    kw = dict(input_ids=[_ids(rt, spec["template"], text)], languages=[language], max_new_tokens=frames + 1,
              do_sample=False, subtalker_dosample=False)
    if instruct:
        kw["instruct_ids"] = [_ids(rt, spec["instruct_template"], instruct)]
    if voice is not None:
        import torch

        kw.update(ref_ids=[_ids(rt, spec["ref_template"], voice.text)], voice_clone_prompt={
            "ref_spk_embedding": [torch.from_numpy(voice.vector)], "x_vector_only_mode": [False],
            "icl_mode": [True], "ref_code": [torch.from_numpy(voice.codes)]})
    else:
        kw["speakers"] = [speaker]
    codes, _ = model.generate(**kw)
    return codes[0].numpy()


def runtime_codes(rt, text: str, speaker, language: str, frames: int, instruct=None, context=(),
                  sampling=None, seed: int = 0) -> np.ndarray:
    from voxport.runtime.sampling import Sampling
    from voxport.runtime.stream import Speech

    speech = Speech(rt, text, speaker=speaker, language=language, instruct=instruct, context=list(context),
                    max_frames=frames, chunk_frames=frames, sampling=sampling or Sampling(), seed=seed)
    for _ in speech:
        pass
    codes = np.stack(speech.codes)
    return codes[:-1] if rt.contract.is_stop(codes[-1]) else codes  # the reference drops the eos frame


def greedy_case(rt, model, frames: int, speaker, language: str = "english") -> dict:
    from voxport.exporter.parity_kit import compare_codes

    ref = reference_codes(rt, model, TEXT, speaker, language, frames)
    got = runtime_codes(rt, TEXT, speaker, language, frames)
    return {**compare_codes(ref, got), "speaker": speaker, "language": language}


def voice_clone_case(rt, model, frames: int, device: str) -> dict:
    """Base: a reference clip through the runtime's codec encoder and speaker encoder graphs, in
    context (ICL), vs the reference's own encode + x-vector + generate on the same clip."""
    import torch

    from voxport.runtime.prompt import Utterance
    from voxport.exporter.parity_kit import compare_codes, reference_wave

    wave = reference_wave(rt.rt["sample_rate"])
    voice = Utterance(REF_TEXT, None, rt.encode_audio(wave), vector=rt.speaker_vector(wave))
    with torch.no_grad():
        tok = model.speech_tokenizer.model
        ref_code = tok.encode(torch.from_numpy(wave)[None].to(device),
                              padding_mask=torch.ones(1, wave.shape[0], dtype=torch.long, device=device)).audio_codes[0]
        ref_vector = model.extract_speaker_embedding(wave, rt.rt["sample_rate"]).cpu().numpy()
    got = runtime_codes(rt, TEXT, None, "english", frames, context=[voice])
    ref = reference_codes(rt, model, TEXT, None, "english", frames,
                          voice=Utterance(REF_TEXT, None, ref_code.cpu().numpy(), vector=ref_vector))
    return {**compare_codes(ref, got), "voice": voice, "context_frames": int(voice.codes.shape[0]),
            "encoder_codes_identical": bool(np.array_equal(voice.codes, ref_code.cpu().numpy())),
            "speaker_vector_max_abs": float(np.abs(voice.vector - ref_vector).max())}


def sampling_case(rt, speaker, frames: int = 8) -> dict:
    """Seeded sampling (the model's own defaults: T 0.9, top-k 50) is reproducible, another seed differs."""
    from voxport.runtime.sampling import Sampling

    s = Sampling(temperature=0.9, top_k=50)
    a, b, c = (runtime_codes(rt, TEXT, speaker, "english", frames, sampling=s, seed=seed) for seed in (1234, 1234, 4321))
    return {"frames": frames, "reproducible": bool(np.array_equal(a, b)), "other_seed_differs": bool(not np.array_equal(a, c))}


def steps_case(rt, speaker, context=(), frames: int = 12, seed: int = 1234) -> dict:
    """The step graphs, with sampling and the talker's logits processors in numpy (voxport/runtime/steps.py),
    draw the fused frame graph's codes from the same noise: greedy, and sampled with top-k and top-p."""
    from voxport.runtime.sampling import Sampling

    out = {"frames": frames, "temperature": 0.9, "top_k": 50, "top_p": 0.8}
    for name, s in (("greedy", Sampling()), ("sampled", Sampling(0.9, 50, top_p=0.8))):
        fused = runtime_codes(rt, TEXT, speaker, "english", frames, context=context, sampling=s, seed=seed)
        steps = rt.generate(TEXT, speaker=speaker, context=list(context), max_frames=frames, sampling=s, seed=seed,
                            decode=False, language="english").codes
        steps = steps[:-1] if rt.contract.is_stop(steps[-1]) else steps
        out[name] = bool(np.array_equal(fused, steps))
    return out


def prompt_cases(rt, model) -> dict:
    """Runtime prompt embeddings (and per-frame text) vs the reference's, per recipe variant."""
    from voxport.runtime.prompt import Utterance

    spec = rt.rt["generation"]["prompt"]
    speakers, dialects = sorted(spec["speakers"]), sorted(spec["dialects"])
    cases = {}
    variants = []
    if speakers:
        variants.append(("speaker_language", speakers[0], "english", None))
        if dialects:
            variants.append(("dialect_speaker", dialects[0], "chinese", None))
    if spec["instruct"]:
        variants.append(("instruct_auto", speakers[0] if speakers else None, "auto", "Speak slowly and warmly."))
    for name, speaker, language, instruct in variants:
        kw = dict(input_ids=[_ids(rt, spec["template"], TEXT)], languages=[language])
        if speaker is not None:
            kw["speakers"] = [speaker]
        if instruct:
            kw["instruct_ids"] = [_ids(rt, spec["instruct_template"], instruct)]
        ref, ref_trailing = reference_prompt(model, **kw)
        turns = [Utterance(TEXT, speaker, language=language, instruct=instruct)]
        cases[name] = _compare(rt, turns, ref, ref_trailing)
    return cases


def _compare(rt, turns, ref: np.ndarray, ref_trailing: np.ndarray) -> dict:
    from voxport.runtime.sampling import Sampling

    embeds, per_frame = rt.embed(rt.prepare(turns, 1, Sampling()))
    ours = embeds[0]
    trailing = np.concatenate([f["text_embed"][0] for f in per_frame])[: len(ref_trailing)]
    err = float(np.abs(ours - ref).max()) if ours.shape == ref.shape else float("inf")
    terr = float(np.abs(trailing - ref_trailing).max()) if trailing.shape == ref_trailing.shape else float("inf")
    return {"positions": int(ref.shape[0]), "max_abs": err, "trailing_max_abs": terr, "allowed": PROMPT_ATOL,
            "ok": bool(err <= PROMPT_ATOL and terr <= PROMPT_ATOL)}


def _decode(model, codes: np.ndarray, device: str) -> np.ndarray:
    """The codec decoder's plain forward (exactly causal; the reference's chunked decode differs past
    300 frames: voxport/exporter/families/qwen3_tts/codec.py)."""
    import torch

    from voxport.exporter.families.qwen3_tts.codec import CodecDecode

    with torch.no_grad():
        return CodecDecode(model.speech_tokenizer.model)(torch.from_numpy(codes[None]).to(device))[0, 0].cpu().numpy()


def run(rt, family, ckpt, frames: int, device: str, progress) -> list:
    from voxport.exporter import parity_kit as kit
    from voxport.exporter.spec import ParityRow

    model = family.model
    spec = rt.rt["generation"]["prompt"]
    speaker = rt.default_speaker
    rows = []
    progress("parity: prompt embeddings (runtime recipe vs the reference's generate), per recipe variant")
    prompt = prompt_cases(rt, model)
    bad = [f"prompt {name}: max |diff| {c['max_abs']:.3g} / trailing {c['trailing_max_abs']:.3g} > {c['allowed']}"
           for name, c in prompt.items() if not c["ok"]]
    rows.append(ParityRow("prompt", not bad, f"prompt embeddings {'equal' if not bad else 'DIFFER'} to the "
                          f"reference's in {len(prompt)} recipe variants (" + ", ".join(
                              f"{n}: {c['max_abs']:.1e}" for n, c in prompt.items()) + ")", prompt, "; ".join(bad)))
    progress("parity: streaming codec decode (chunks of 1, 2, 3, 7 frames) vs the batch decode, 320 frames")
    sd = kit.stream_decode_case(
        rt, lambda codes: _decode(model, codes, device), model.speech_tokenizer.model.config.decoder_config.codebook_size)
    rows.append(kit.stream_decode_row(sd))
    context = []
    if spec["voice_clone"]:
        progress(f"parity: voice clone, {frames} greedy frames, runtime encoders + ICL vs the reference's")
        v = voice_clone_case(rt, model, frames, device)
        context = [v.pop("voice")]
        rows.append(ParityRow("voice_prompt", v["identical"] and v["encoder_codes_identical"],
                              f"cloned voice ({v['context_frames']} context frames) {kit.same(v)} to the reference "
                              f"over {v['frames_reference']} frames; encoder codes identical: "
                              f"{v['encoder_codes_identical']}", v,
                              f"voice clone: codes differ from the reference at frame {v['first_mismatch_frame']} "
                              f"(encoder codes identical: {v['encoder_codes_identical']})"))
    progress("parity: step graphs (numpy sampling and logits processors) vs the fused frame graph, same noise")
    st = steps_case(rt, speaker, context)
    rows.append(ParityRow("steps", st["greedy"] and st["sampled"],
                          f"step graphs vs the fused frame graph, {st['frames']} frames, same noise: greedy identical: "
                          f"{st['greedy']}, sampled (T={st['temperature']}, top-k {st['top_k']}, top-p {st['top_p']}) "
                          f"identical: {st['sampled']}", st,
                          f"step graphs: codes differ from the fused frame graph's (greedy {st['greedy']}, "
                          f"sampled {st['sampled']})"))
    progress("parity: sampling reproducibility")
    sc = sampling_case(rt, speaker)
    rows.append(ParityRow("sampling", sc["reproducible"] and sc["other_seed_differs"],
                          f"seed reproducible: {sc['reproducible']}, another seed differs: {sc['other_seed_differs']}",
                          sc, f"sampling: not reproducible from the seed ({sc})"))
    if speaker is not None:
        progress(f"parity: greedy generation, {frames} frames, fused frame graph vs the reference's generate")
        g = greedy_case(rt, model, frames, speaker)
        rows.append(ParityRow("greedy", g["identical"], f"{kit.same(g)} to the reference's generate over "
                              f"{g['frames_reference']} frames", g,
                              f"greedy generation: codes differ from the reference at frame {g['first_mismatch_frame']} "
                              f"({g['frames_onnx']} vs {g['frames_reference']} frames)"))
    return rows


def reference_generate(family, text: str, frames: int, device: str):
    """qwen-tts-hf's generate, greedy, as the runtime's defaults (the first speaker, language auto):
    (codes, wall time per frame, the
    codec's plain decode). Its generate takes no streamer; a hook on the talker's forward (one call
    per frame: the prefill, then each step) notes when each frame's group-0 logits exist."""
    import time

    import torch

    from voxport.exporter.families.qwen3_tts.codec import CodecDecode

    model, spec = family.model, family.runtime_config()["generation"]
    speakers = spec["speakers"]["names"]
    tok = _tokenizer(family.source)
    ids = torch.tensor([tok.encode(spec["prompt"]["template"].format(text=text), add_special_tokens=False).ids])
    marks = []
    hook = model.talker.register_forward_hook(lambda *a: marks.append(time.perf_counter()))
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            codes, _ = model.generate(input_ids=[ids.to(device)], languages=["auto"],
                                      speakers=[speakers[0]] if speakers else None, max_new_tokens=frames + 1,
                                      do_sample=False, subtalker_dosample=False)
    finally:
        hook.remove()
    # the frame completed by talker call i + 1 (its codes are the input of the next call)
    marks = [t0, *marks[1:]][: len(codes[0]) + 1]
    decoder = CodecDecode(model.speech_tokenizer.model)

    def decode(c):
        return decoder(torch.as_tensor(c).T[None].to(device))

    return codes[0].cpu().numpy(), [b - a for a, b in zip(marks, marks[1:])], decode


def _tokenizer(path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    return Tokenizer.from_str(AutoTokenizer.from_pretrained(path).backend_tokenizer.to_str())
