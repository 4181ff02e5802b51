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


def runtime_codes(rt, text: str, speaker, language: str, frames: int, instruct=None, context=()) -> np.ndarray:
    from voxport.runtime.stream import Speech

    speech = Speech(rt, text, speaker=speaker, language=language, instruct=instruct, context=list(context),
                    max_frames=frames, chunk_frames=frames)
    for _ in speech:
        pass
    codes = np.stack(speech.codes)
    return codes[:-1] if rt.contract.is_stop(codes[-1]) else codes  # the reference drops the eos frame


def greedy_case(rt, model, frames: int, speaker, language: str = "english") -> dict:
    from voxport.validation.e2e import compare_codes

    ref = reference_codes(rt, model, TEXT, speaker, language, frames)
    got = runtime_codes(rt, TEXT, speaker, language, frames)
    return {**compare_codes(ref, got), "speaker": speaker, "language": language}


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


def run(rt, family, ckpt, frames: int, device: str, progress) -> tuple[dict, list[str]]:
    from voxport.validation import streaming

    model = family.model
    spec = rt.rt["generation"]["prompt"]
    speaker = rt.default_speaker
    results, failures = {}, []
    progress("parity: prompt embeddings (runtime recipe vs the reference's generate), per recipe variant")
    results["prompt"] = prompt_cases(rt, model)
    failures += [f"prompt {name}: max |diff| {c['max_abs']:.3g} / trailing {c['trailing_max_abs']:.3g} > {c['allowed']}"
                 for name, c in results["prompt"].items() if not c["ok"]]
    progress("parity: streaming codec decode (chunks of 1, 2, 3, 7 frames) vs the batch decode, 320 frames")
    results["stream_decode"] = sd = streaming.stream_decode_case(
        rt, lambda codes: _decode(model, codes, device), model.speech_tokenizer.model.config.decoder_config.codebook_size)
    if not sd["ok"]:
        failures.append(f"streaming decode: relative error {sd['worst_rel']:.3g} > {sd['allowed_rel']}")
    if speaker is not None:
        progress(f"parity: greedy generation, {frames} frames, fused frame graph vs the reference's generate")
        results["greedy"] = g = greedy_case(rt, model, frames, speaker)
        if not g["identical"]:
            failures.append(f"greedy generation: codes differ from the reference at frame {g['first_mismatch_frame']} "
                            f"({g['frames_onnx']} vs {g['frames_reference']} frames)")
    return results, failures
