"""An artifact's runtime: sessions, prompts, voice prompts and the codec, all from the manifest.

Streaming generation (one fused `frame` call per frame) is runtime/stream.py; the step-graph loop
(runtime/steps.py) is the debugging and parity path of artifacts that declare step graphs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxport.runtime.audio import read_reference
from voxport.runtime.graphs import Graphs
from voxport.runtime.prompt import PromptBuilder, Utterance
from voxport.runtime.contract import FrameContract
from voxport.runtime.sampling import Sampling
from voxport.errors import InputError


@dataclass
class Result:
    codes: np.ndarray  # [frames, K], every generated frame (an eos frame included, as transformers)
    audio: np.ndarray | None  # [samples] float32, frames before the first all-eos frame
    prompt_tokens: int
    stats: dict = field(default_factory=dict)


def speakers(manifest: dict) -> list[str]:
    """The speaker names a server lists (the manifest's generation.speakers)."""
    return list(manifest["runtime"]["generation"]["speakers"]["names"])


def takes_voice_prompts(manifest: dict) -> bool:
    """Whether a reference clip can be encoded (the artifact has the codec's encoder graph)."""
    return manifest["runtime"]["generation"]["codec"].get("encoder") in manifest["graphs"]


class Runtime:
    def __init__(self, artifact_dir: Path, providers: list[str] | None = None, threads: int = 0,
                 dtype: str = "fp32"):
        self.graphs = Graphs(artifact_dir, providers, threads, dtype)
        self.rt = self.graphs.rt
        self.contract = FrameContract(self.rt)
        self.codec = self.rt["generation"]["codec"]
        self.prompts = PromptBuilder(artifact_dir, self.rt)

    @property
    def speakers(self) -> list[str]:
        return speakers(self.graphs.manifest)

    @property
    def voice_prompts(self) -> bool:
        return takes_voice_prompts(self.graphs.manifest)

    def load_streaming(self) -> None:
        """Create (hash check + load) the sessions the streaming path uses, before the first request."""
        for graph in (self.prompts.graph, self.contract.graph, self.rt["codec_stream"]["graph"]):
            self.graphs.session(graph)

    # -- prompt ----------------------------------------------------------------------------------
    def encode_audio(self, wave: np.ndarray) -> np.ndarray:
        """mono float32 at the codec rate -> codes [frames, K]."""
        codes = self.graphs.run(self.codec["encoder"], {"input_values": wave.reshape(1, 1, -1).astype(np.float32)})[0]
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
        self.contract.sampling_feeds(sampling)  # checks the settings against every sampling group
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
        """The step-graph loop (one call per graph step): the debugging and parity path."""
        from voxport.runtime.steps import generate_steps

        t0 = time.perf_counter()
        ids, audio_codes, max_frames = self.prepare(text, speaker, context, max_frames, sampling)
        codes, stats = generate_steps(self, ids, audio_codes, max_frames, sampling, seed)
        t_gen = time.perf_counter()
        audio = self.decode(codes) if decode else None
        return Result(codes, audio, ids.shape[1], {
            **stats, "prompt_tokens": ids.shape[1], "generate_s": t_gen - t0,
            "decode_s": time.perf_counter() - t_gen,
            "audio_s": 0.0 if audio is None else audio.shape[0] / self.rt["sample_rate"]})

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes [frames, K] -> waveform, cut at the first frame whose codes are all the stop token (as
        transformers' generate)."""
        eos = np.flatnonzero(np.all(codes == self.contract.stop["token"], axis=-1))
        codes = codes[: eos[0]] if eos.size else codes
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        return self.graphs.run(self.codec["decoder"], {"audio_codes": codes.T[None].astype(np.int64)})[0][0, 0]
