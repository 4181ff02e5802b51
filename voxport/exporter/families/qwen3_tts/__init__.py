"""Qwen3-TTS (12 Hz, qwen-tts-hf's Qwen3TTSForConditionalGeneration): graphs and runtime facts.

How a prompt maps onto `prompt_embed` (text track / codec track per position; "-" is NONE; T(x) the
tokenised text, P = tts_pad, B = tts_bos, E = tts_eos text ids; codec specials are group-0 ids):

  CustomVoice, speaker s, language l, text "<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n"
  tokenised as ids[0..n):
    ids[0:3] / -            (role)
    P / think, P / think_bos, P / lang(l), P / think_eos, P / spk(s), B / codec_pad
    ids[3] / codec_bos
  and per generated frame t the frame graph's text_embed is prompt_embed(ids[4+t] / -) while
  4+t < n-5, then prompt_embed(E / -) once, then prompt_embed(P / -).
  Language "auto": nothink, think_bos, think_eos instead of the four think ids (one P fewer). A dialect
  speaker with language chinese/auto uses its dialect's language id. No speaker: the spk position is
  left out.
  Instruct: T("<|im_start|>user\\n{instruct}<|im_end|>\\n") / - prepended.
  Base voice clone (ICL, ref text r, ref codes R [F, 16]): the spk position is - / - with the
  speaker encoder's x-vector added to the embedding; after B / codec_pad come the ICL positions:
  text track T' = ref_ids[3:-2] + ids[3:-5] + [E], codec track C' = [codec_bos] + the F frames of R
  (all 16 groups); if len(T') > len(C'): positions T'[i] / C'[i] for i < len(C'), and T'[len(C'):]
  is the trailing text; else T' padded with P to len(C'), trailing text empty (P from the start).
  The x-vector is the `speaker_encoder` graph's output for the reference audio resampled to 24 kHz
  mono (the reference resamples with librosa.resample), at least runtime speaker_encoder.min_samples.
"""

from __future__ import annotations

from pathlib import Path

from voxport.errors import CheckpointError
from voxport.exporter.families.qwen3_tts import codec, graphs, presets, speaker, vocab
from voxport.exporter.families.qwen3_tts.precision import QWEN_PRECISION
from voxport.exporter.shared_graphs import kv_cache_contract
from voxport.exporter.spec import Family, GraphSpec, capture_entry, register

TOKENIZER_FILE = "tokenizer.json"
# the chat format around the text (qwen-tts-hf's inference wrapper); the reference slices the
# tokenised prompt by position: a 3-token role prefix and a 5-token suffix (2 for a reference text)
TEMPLATE = "<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"
REF_TEMPLATE = "<|im_start|>assistant\n{text}<|im_end|>\n"
INSTRUCT_TEMPLATE = "<|im_start|>user\n{text}<|im_end|>\n"


@register
class Qwen3TtsFamily(Family):
    name = "qwen3_tts"
    model_types = ("qwen3_tts",)
    presets = presets.PRESETS
    precision = QWEN_PRECISION
    llama_tts = True  # llama.cpp's Qwen3-TTS runner: talker in libllama, predictor and codec in mtmd

    @classmethod
    def llama_tts_refusal(cls, path: Path, config: dict) -> str | None:
        """What llama.cpp's converter and runner need of a checkpoint, as they were found to need it."""
        if config.get("architectures") != ["Qwen3TTSForConditionalGeneration"]:
            return (f"config.json's architectures is {config.get('architectures')}, not the released "
                    "['Qwen3TTSForConditionalGeneration'] llama.cpp's converter picks its model class by")
        if config.get("tts_model_type") != "base":
            return (f"llama-tts runs only Base checkpoints; this one is {config.get('tts_model_type')} (its converted "
                    "speaker model has no speaker-encoder tensors and does not load)")
        size = vocab.bpe_size(path)
        if size < vocab.QWEN2_TOKENS:
            return (f"the checkpoint's tokenizer has {size} tokens, not the released Qwen2 vocabulary llama.cpp's "
                    "converter recognises (the tiny presets' is a stand-in)")
        return None

    @classmethod
    def build_preset(cls, preset, out: Path) -> None:
        presets.build_preset(preset, out)

    @classmethod
    def check_dir(cls, path: Path, config: dict) -> None:
        from voxport.exporter.checkpoint import check_weights

        for need in ("generation_config.json", "speech_tokenizer/config.json"):
            if not (path / need).is_file():
                raise CheckpointError(f"{path}: missing {need}; a Qwen3-TTS checkpoint has it (released layout)")
        check_weights(path / "speech_tokenizer")
        if not any((path / f).is_file() for f in (TOKENIZER_FILE, "vocab.json")):
            raise CheckpointError(f"{path}: no tokenizer ({TOKENIZER_FILE}, or vocab.json + merges.txt)")

    @classmethod
    def load(cls, path: Path, device: str = "cpu"):
        return presets.load(path).to(device)

    def reference_generate(self, text, frames, device):
        from voxport.exporter.families.qwen3_tts.parity import reference_generate

        return reference_generate(self, text, frames, device)

    def parity(self, rt, ckpt, frames, device, progress):
        from voxport.exporter.families.qwen3_tts.parity import run

        return run(rt, self, ckpt, frames, device, progress)

    def graphs(self) -> list[GraphSpec]:
        m = self.model
        specs = [graphs.prompt_embed(m), graphs.talker(m), graphs.code_predictor(m), graphs.frame(m),
                 *graphs.frame_capture(m)]
        if m.speaker_encoder is not None:  # Base checkpoints: voice cloning from reference audio
            specs.append(graphs.speaker_encoder(m))
        return [*specs, *codec.codec_graphs(m.speech_tokenizer.model)]

    def artifact_files(self, out: Path) -> dict[str, str]:
        """tokenizer.json for torch-free runtimes (released checkpoints may ship only vocab.json +
        merges.txt: the fast tokenizer transformers builds from them is written out)."""
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(self.source).backend_tokenizer.save(str(out / TOKENIZER_FILE))
        return {"tokenizer_file": TOKENIZER_FILE}

    def runtime_config(self) -> dict:
        cfg = self.model.config
        tc = cfg.talker_config
        pc = tc.code_predictor_config
        gen = self.model.generate_config or {}
        g, v, vp = tc.num_code_groups, tc.vocab_size, pc.vocab_size
        cache = kv_cache_contract(tc)
        eos = tc.codec_eos_token_id
        stream = codec.codec_stream_runtime(self.model.speech_tokenizer.model)
        sample_rate, frame_size = stream.pop("sample_rate"), stream.pop("frame_size")
        return {
            "family": self.name,
            "num_codebooks": g,
            "codebook_vocab": v,
            "max_positions": tc.max_position_embeddings,
            "sample_rate": sample_rate,
            "frame_size": frame_size,
            "frame_rate": sample_rate / frame_size,
            # frames per codec call, the i-th chunk of an utterance schedule[i] (the last repeats): the first
            # audio after one frame, then the codec's cost per frame falls (8 frames per call cost 29% less
            # per frame than 1 at 0.6B q4 on 2 cores; qwen3-tts-tiny q4, two runs on a busy 2-core machine:
            # 0.9-2.4 vs 4.5-4.9 ms per frame, first audio no later than 1-frame chunks; voxport/bench/chunk_schedule.py)
            "codec_stream": {**stream, "chunk_schedule": [1, 2, 4, 8]},
            "generation": {
                "frame": {"graph": "frame", "codes": "codes", "noise": "noise",
                          "embeds": {"input": "inputs_embeds", "output": "next_embeds"},
                          "cache": kv_cache_contract(tc, tc.max_position_embeddings),
                          **capture_entry(graphs.frame_capture(self.model)),
                          # the next text token's embedding joins each frame's input (streaming text)
                          "per_frame": [{"input": "text_embed", "source": "trailing_text"}],
                          # the reference's talker logits processors (applied when greedy too): repetition
                          # penalty on codes already generated, ids [V-1024, V) but eos never sampled,
                          # eos not before min_new_tokens frames
                          "logits": {"codebook": 0, "repetition_penalty": "repetition_penalty", "seen": "c0_seen",
                                     "bias": "c0_bias", "suppress": [v - 1024, v], "allow": [eos],
                                     "min_frames": 2, "min_frames_token": eos}},
                "codebooks": g, "noise_vocab": v,
                "sampling": [
                    {"name": "talker", "codebooks": [0, 1], "vocab": v,
                     "inputs": {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
                     "defaults": {"temperature": gen.get("temperature", 0.9), "top_k": gen.get("top_k", 50),
                                  "top_p": gen.get("top_p", 1.0),
                                  "repetition_penalty": gen.get("repetition_penalty", 1.05)}},
                    {"name": "predictor", "codebooks": [1, g], "vocab": vp,
                     "inputs": {"temperature": "predictor_temperature", "top_k": "predictor_top_k",
                                "top_p": "predictor_top_p"},
                     "defaults": {"temperature": gen.get("subtalker_temperature", 0.9),
                                  "top_k": gen.get("subtalker_top_k", 50), "top_p": gen.get("subtalker_top_p", 1.0)}}],
                "stop": {"codebooks": [0, 1], "token": eos},
                "defaults": {"max_frames": 125},  # 10 s at 12.5 Hz
                "prompt": {
                    "format": "dual_track", "graph": "prompt_embed", "text": "text_ids", "codes": "codec_ids",
                    "none": -1, "groups": g, "template": TEMPLATE, "head": 3, "tail": 5,
                    "ref_template": REF_TEMPLATE, "ref_head": 3, "ref_tail": 2, "instruct_template": INSTRUCT_TEMPLATE,
                    "text_ids": {"pad": cfg.tts_pad_token_id, "bos": cfg.tts_bos_token_id, "eos": cfg.tts_eos_token_id},
                    "codec_ids": {"pad": tc.codec_pad_id, "bos": tc.codec_bos_id, "think": tc.codec_think_id,
                                  "nothink": tc.codec_nothink_id, "think_bos": tc.codec_think_bos_id,
                                  "think_eos": tc.codec_think_eos_id},
                    "languages": dict(tc.codec_language_id or {}),
                    "speakers": dict(tc.spk_id or {}),
                    "dialects": {k: d for k, d in (tc.spk_is_dialect or {}).items() if d},
                    # what qwen-tts-hf's wrapper accepts per model type: CustomVoice speaks as its named
                    # speakers (an instruction too, except at 0.6B); Base clones a reference voice
                    # (x-vector + in-context codes); VoiceDesign takes only an instruction
                    "instruct": cfg.tts_model_type == "voice_design"
                    or (cfg.tts_model_type == "custom_voice" and cfg.tts_model_size != "0b6"),
                    "voice_clone": cfg.tts_model_type == "base",
                },
                "speakers": {"kind": "name", "names": list(tc.spk_id or {})},  # the config's order
                "codec": {"decoder": "codec_decoder", "encoder": "codec_encoder", "stream": "codec_decoder_stream",
                          **({} if self.model.speaker_encoder is None else {
                              "speaker_encoder": "speaker_encoder",
                              "speaker_encoder_min_samples": speaker.min_samples(cfg.speaker_encoder_config)})},
                # the step loop (voxport/runtime/steps.py): a frame's codes embedded by the prompt graph with
                # no text (the streamed text joins as in the frame graph), the talker step, then the code
                # predictor's 15 steps on (talker state, group 0), one code at a time
                "steps": {
                    "embed": {"graph": "prompt_embed", "ids": "text_ids", "codes": "codec_ids", "frame_token": -1},
                    "backbone": {"graph": "talker", "embeds": "inputs_embeds", "attention_mask": "attention_mask",
                                 "position_ids": "position_ids", "cache": cache},
                    "depth": {"graph": "code_predictor", "ids": "input_ids", "hidden": "talker_hidden_state",
                              "cache": kv_cache_contract(pc)}},
            },
        }
