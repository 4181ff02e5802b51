"""CSM / Marvis generation from the step graphs: backbone -> 31 depth steps per frame -> Mimi."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxport.runtime.audio import read_reference
from voxport.runtime.graphs import Graphs
from voxport.runtime.prompt import PromptBuilder, Utterance
from voxport.runtime.sampling import Sampling, choose, draw_noise
from voxport.errors import InputError

ENCODER = "mimi_encoder"


@dataclass
class Result:
    codes: np.ndarray  # [frames, K], every generated frame (an eos frame included, as transformers)
    audio: np.ndarray | None  # [samples] float32, frames before the first all-eos frame
    prompt_tokens: int
    stats: dict = field(default_factory=dict)


def _empty_past(spec: dict, batch: int = 1) -> list[np.ndarray]:
    shape = (batch, spec["kv_heads"], 0, spec["head_dim"])
    return [np.zeros(shape, np.float32) for _ in range(2 * spec["layers"])]


def _kv_feeds(past: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"past_key_values.{i // 2}.{'key' if i % 2 == 0 else 'value'}": t for i, t in enumerate(past)}


class CsmRuntime:
    # the chat template takes any integer as a speaker id; CSM and Marvis are trained on two-party
    # conversations, speakers 0 and 1, which is what a server lists
    speakers = ("0", "1")

    def __init__(self, artifact_dir: Path, providers: list[str] | None = None, threads: int = 0,
                 dtype: str = "fp32"):
        self.graphs = Graphs(artifact_dir, providers, threads, dtype)
        self.rt = self.graphs.rt
        self.prompts = PromptBuilder(artifact_dir, self.rt)

    @staticmethod
    def takes_voice_prompts(manifest: dict) -> bool:
        """Whether a reference clip can be encoded (the artifact has the codec's encoder)."""
        return ENCODER in manifest["graphs"]

    @property
    def voice_prompts(self) -> bool:
        return self.takes_voice_prompts(self.graphs.manifest)

    def load_streaming(self) -> None:
        """Create (hash check + load) the sessions the streaming path uses, before the first request."""
        for graph in ("embed", "frame", self.rt["codec_stream"]["graph"]):
            self.graphs.session(graph)

    # -- prompt ----------------------------------------------------------------------------------
    def encode_audio(self, wave: np.ndarray) -> np.ndarray:
        """mono float32 at the codec rate -> codes [frames, K]."""
        codes = self.graphs.run(ENCODER, {"input_values": wave.reshape(1, 1, -1).astype(np.float32)})[0]
        return codes[0].T.astype(np.int64)

    def reference(self, path: Path, text: str, speaker: int) -> Utterance:
        # leave at least half the context for the new utterance
        max_s = self.rt["max_positions"] / 2 / self.rt["frame_rate"]
        wave = read_reference(path, self.rt["sample_rate"], max_s)
        return Utterance(text, speaker, self.encode_audio(wave))

    # -- generation ------------------------------------------------------------------------------
    def prepare(self, text: str, speaker: int, context: list[Utterance] | None, max_frames: int,
                sampling: Sampling) -> tuple[np.ndarray, np.ndarray, int]:
        """Checked prompt: (token ids [1, T], audio codes [1, T, K], frames that fit after it)."""
        rt = self.rt
        sampling.validate(rt["codebook_vocab"])
        if not text.strip():
            raise InputError("text is empty")
        if max_frames < 1:
            raise InputError(f"max frames must be >= 1, got {max_frames}")
        ids, audio_codes = self.prompts.build([*(context or []), Utterance(text, speaker)])
        n_prompt, limit = ids.shape[1], rt["max_positions"]
        if n_prompt + 1 > limit:
            raise InputError(f"prompt is {n_prompt} tokens; this model's context is {limit} positions "
                             f"(text + context audio frames + generated frames); shorten the text or the reference")
        return ids, audio_codes, min(max_frames, limit - n_prompt)

    def generate(self, text: str, speaker: int = 0, context: list[Utterance] | None = None,
                 max_frames: int = 125, sampling: Sampling = Sampling(), seed: int = 0,
                 decode: bool = True) -> Result:
        """The step-graph loop (33 runtime calls per frame): the debugging and parity path."""
        rt = self.rt
        ids, audio_codes, max_frames = self.prepare(text, speaker, context, max_frames, sampling)
        n_prompt = ids.shape[1]
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()

        embeds = self.graphs.run("embed", {"input_ids": ids, "audio_codes": audio_codes})[0]
        past = _empty_past(rt["backbone"])
        frames, pos, marks = [], 0, [t0]  # marks: when each frame was done
        audio_in = np.full((1, 1), rt["audio_token_id"], np.int64)
        while True:
            seq = embeds.shape[1]
            out = self.graphs.run("backbone", {
                "inputs_embeds": embeds,
                "attention_mask": np.ones((1, pos + seq), np.int64),
                "position_ids": np.arange(pos, pos + seq, dtype=np.int64)[None],
                **_kv_feeds(past)})
            hidden, logits, past = out[0], out[1], out[2:]
            pos += seq
            noise = draw_noise(rng, rt["num_codebooks"], rt["codebook_vocab"])
            frame = self._frame(hidden[:, -1], logits[:, -1], sampling, noise[0])
            frames.append(frame)
            marks.append(time.perf_counter())
            # transformers stops when every codebook but the last is eos; the eos frame is kept
            if np.all(frame[:-1] == rt["codebook_eos_token_id"]) or len(frames) >= max_frames:
                break
            embeds = self.graphs.run("embed", {"input_ids": audio_in, "audio_codes": frame[None, None]})[0]
        t_gen = time.perf_counter()
        codes = np.stack(frames)
        audio = self.decode(codes) if decode else None
        t_end = time.perf_counter()
        return Result(codes, audio, n_prompt, {
            "frames": len(frames), "prompt_tokens": n_prompt,
            "first_frame_s": marks[1] - t0, "generate_s": t_gen - t0, "decode_s": t_end - t_gen,
            "audio_s": 0.0 if audio is None else audio.shape[0] / rt["sample_rate"],
            "runtime_calls_per_frame": 2 + (rt["num_codebooks"] - 1),  # embed + backbone + depth steps
            # wall time of each frame (the first includes the prompt's prefill), for benchmarks
            "frame_s": [b - a for a, b in zip(marks, marks[1:])],
        })

    def _frame(self, hidden: np.ndarray, logits: np.ndarray, sampling: Sampling, noise: np.ndarray) -> np.ndarray:
        """One audio frame of K codes: codebook 0 from the backbone, the rest from the depth decoder;
        codebook i draws with noise[i] (the fused graph's `noise` input, same arithmetic)."""
        c = choose(logits, sampling, noise[0:1])
        codes = [c[0]]
        ids = np.array([[0, c[0]]], np.int64)  # position 0 is replaced by the backbone hidden state
        past = _empty_past(self.rt["depth"])
        for i in range(1, self.rt["num_codebooks"]):
            out = self.graphs.run("depth", {"input_ids": ids, "backbone_last_hidden_state": hidden,
                                            **_kv_feeds(past)})
            c = choose(out[0], sampling, noise[i:i + 1])
            past = out[1:]
            codes.append(c[0])
            ids = c[:, None]
        return np.array(codes, np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes [frames, K] -> waveform, cut at the first all-eos frame (as transformers' generate)."""
        eos = np.flatnonzero(np.all(codes == self.rt["codebook_eos_token_id"], axis=-1))
        codes = codes[: eos[0]] if eos.size else codes
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        return self.graphs.run("mimi_decoder", {"audio_codes": codes.T[None].astype(np.int64)})[0][0, 0]
