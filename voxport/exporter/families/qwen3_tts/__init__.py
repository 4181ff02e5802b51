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

from voxport.exporter.families.qwen3_tts import model as graphs
from voxport.exporter.families.qwen3_tts import speaker
from voxport.exporter.families.qwen3_tts.precision import QWEN_PRECISION
from voxport.exporter.spec import Family, GraphSpec, register


@register
class Qwen3TtsFamily(Family):
    name = "qwen3_tts"
    precision = QWEN_PRECISION

    @classmethod
    def matches(cls, config) -> bool:
        return getattr(config, "model_type", None) == "qwen3_tts"

    def graphs(self) -> list[GraphSpec]:
        m = self.model
        specs = [graphs.prompt_embed(m), graphs.talker(m), graphs.code_predictor(m), graphs.frame(m)]
        if m.speaker_encoder is not None:  # Base checkpoints: voice cloning from reference audio
            specs.append(graphs.speaker_encoder(m))
        return specs

    def runtime_config(self) -> dict:
        cfg = self.model.config
        tc = cfg.talker_config
        pc = tc.code_predictor_config
        gen = self.model.generate_config or {}
        return {
            "family": self.name,
            "model_type": cfg.tts_model_type,
            "num_code_groups": tc.num_code_groups,
            "codec_vocab": tc.vocab_size,
            "predictor_vocab": pc.vocab_size,
            "text_vocab_size": tc.text_vocab_size,
            "text_ids": {k: getattr(cfg, k) for k in ("im_start_token_id", "im_end_token_id", "tts_pad_token_id",
                                                      "tts_bos_token_id", "tts_eos_token_id")},
            "codec_ids": {k: getattr(tc, k) for k in ("codec_pad_id", "codec_bos_id", "codec_eos_token_id",
                                                      "codec_think_id", "codec_nothink_id", "codec_think_bos_id",
                                                      "codec_think_eos_id")},
            "speakers": dict(tc.spk_id or {}),
            "speaker_dialects": dict(tc.spk_is_dialect or {}),
            "languages": dict(tc.codec_language_id or {}),
            # the reference's talker generate: ids [V-1024, V) except eos never sampled; eos not before
            # min_new_tokens frames
            "suppressed_ids": [tc.vocab_size - 1024, tc.vocab_size],
            "min_new_tokens": 2,
            "sampling": {
                "temperature": gen.get("temperature", 0.9), "top_k": gen.get("top_k", 50),
                "top_p": gen.get("top_p", 1.0), "repetition_penalty": gen.get("repetition_penalty", 1.05),
                "predictor_temperature": gen.get("subtalker_temperature", 0.9),
                "predictor_top_k": gen.get("subtalker_top_k", 50),
                "predictor_top_p": gen.get("subtalker_top_p", 1.0),
                "max_new_tokens": gen.get("max_new_tokens", 8192),
            },
            "talker": {"layers": tc.num_hidden_layers, "kv_heads": tc.num_key_value_heads, "head_dim": tc.head_dim,
                       "hidden": tc.hidden_size, "max_positions": tc.max_position_embeddings},
            "predictor": {"layers": pc.num_hidden_layers, "kv_heads": pc.num_key_value_heads,
                          "head_dim": pc.head_dim, "hidden": pc.hidden_size},
            # Base only: input_values = reference audio, 24 kHz mono; output added at the speaker position
            "speaker_encoder": None if self.model.speaker_encoder is None else {
                "sample_rate": speaker.SAMPLE_RATE, "dim": cfg.speaker_encoder_config.enc_dim,
                "min_samples": speaker.min_samples(cfg.speaker_encoder_config)},
            **self.tokenizer_files,
        }
