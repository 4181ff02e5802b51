"""An artifact's runtime: sessions, prompts, voice prompts and the codec, all from the manifest.

Streaming generation (one fused `frame` call per frame) is runtime/stream.py; the step-graph loop
(runtime/steps.py) is the debugging and parity path of artifacts that declare step graphs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxport.runtime.audio import read_reference
from voxport.runtime.codec_stream import codec_noise, codec_rng
from voxport.runtime.graphs import Graphs
from voxport.runtime.prompt import PromptBuilder, Utterance
from voxport.runtime.contract import FrameContract
from voxport.runtime.sampling import Sampling
from voxport.errors import InputError


@dataclass
class Prepared:
    feeds: dict  # the prompt graph's inputs
    tokens: int  # prompt positions
    max_frames: int  # frames that fit after the prompt
    trailing: np.ndarray | None  # text ids fed one per frame (None: the contract feeds none)
    vectors: list  # (row, vector) added to the prompt's embeddings


@dataclass
class Result:
    codes: np.ndarray  # [frames, K], every generated frame (an eos frame included, as transformers)
    audio: np.ndarray | None  # [samples] float32, frames before the first all-eos frame
    prompt_tokens: int
    stats: dict = field(default_factory=dict)


def speakers(manifest: dict) -> list[str]:
    """The speaker names a server lists (the manifest's generation.speakers)."""
    return list(manifest["runtime"]["generation"]["speakers"]["names"])


def voice_prompt_refusal(manifest: dict) -> str | None:
    """Why the model takes no reference clip (None where it does): the artifact has no codec encoder
    graph, or its prompt format clones no voice (a named-speaker model: voice_clone false)."""
    gen = manifest["runtime"]["generation"]
    if gen["codec"].get("encoder") not in manifest["graphs"]:
        return "it has no codec encoder graph"
    if not gen["prompt"].get("voice_clone", True):
        return f"it speaks as its named speakers ({', '.join(sorted(gen['speakers']['names']))}) and clones no voice"
    return None


def takes_voice_prompts(manifest: dict) -> bool:
    return voice_prompt_refusal(manifest) is None


class Runtime:
    def __init__(self, artifact_dir: Path, providers: list[str] | None = None, threads: int = 0,
                 dtype: str = "fp32", context: int | None = None, codec_threads: int | None = None):
        self.graphs = Graphs(artifact_dir, providers, threads, dtype)
        if codec_threads is not None:  # the streaming codec's session apart (a server's codec thread)
            self.graphs.graph_threads[self.graphs.rt["codec_stream"]["graph"]] = codec_threads
        self.rt = self.graphs.rt
        self.contract = FrameContract(self.rt)
        if context is not None:
            self.limit_context(context)
        self.codec = self.rt["generation"]["codec"]
        self.prompts = PromptBuilder(artifact_dir, self.rt)

    def limit_context(self, positions: int) -> None:
        """Hold at most `positions` cache positions per stream (prompt + generated frames), below the
        model's own context: texts are planned into utterances that fit it, and a scheduler's slots are
        that long. A server needs it for a model whose context is far longer than one utterance uses
        (a slot of a 131,072-position 3B Llama is about 15 GB of fp32 cache)."""
        model = self.rt["max_positions"]
        if not 2 <= positions <= model:
            raise InputError(f"context must be between 2 and this model's {model} positions, got {positions}")
        self.rt["max_positions"] = positions
        self.contract.capacity = min(self.contract.capacity or positions, positions)

    @property
    def default_speaker(self) -> int | str | None:
        """CSM's speaker 0, a named model's first speaker; None where the model has no named speakers."""
        spec = self.rt["generation"]["speakers"]
        names = spec["names"]
        if not names:
            return None
        return int(names[0]) if spec["kind"] == "integer" else names[0]

    def check_voice(self, speaker: str | int | None, language: str | None = None, instruct: str | None = None,
                    reference: bool = False) -> int | str | None:
        """The speaker as the prompt format takes it, after checking every voice option against what
        the model supports (one-line errors naming what it does support), before anything loads."""
        spec = self.rt["generation"]["speakers"]
        if speaker is None:
            speaker = None if reference and spec["kind"] == "name" else self.default_speaker
        elif spec["kind"] == "integer":
            if not str(speaker).lstrip("-").isdigit():
                raise InputError(f"speaker {speaker!r}: this model's speakers are integers "
                                 f"(trained on {', '.join(spec['names'])})")
            speaker = int(speaker)
        self.prompts.check(Utterance("-", speaker, language=language, instruct=instruct))
        why = voice_prompt_refusal(self.graphs.manifest) if reference else None
        if why:
            raise InputError(f"this model does not take a reference clip: {why}")
        return speaker

    def load_streaming(self) -> None:
        """Create (hash check + load) the sessions the streaming path uses, before the first request."""
        for graph in (self.prompts.graph, self.contract.graph, self.rt["codec_stream"]["graph"]):
            self.graphs.session(graph)

    # -- prompt ----------------------------------------------------------------------------------
    def encode_audio(self, wave: np.ndarray) -> np.ndarray:
        """mono float32 at the codec rate -> codes [frames, K]."""
        codes = self.graphs.run(self.codec["encoder"], {"input_values": wave.reshape(1, 1, -1).astype(np.float32)})[0]
        return codes[0].T.astype(np.int64)

    def speaker_vector(self, wave: np.ndarray) -> np.ndarray:
        """mono float32 at the codec rate -> the speaker encoder's vector [hidden]."""
        need = self.codec.get("speaker_encoder_min_samples", 0)
        if wave.shape[-1] < need:
            raise InputError(f"reference audio is {wave.shape[-1] / self.rt['sample_rate']:.2f} s; the speaker "
                             f"encoder needs at least {need / self.rt['sample_rate']:.2f} s")
        return self.graphs.run(self.codec["speaker_encoder"], {"input_values": wave.reshape(1, -1).astype(np.float32)})[0][0]

    def reference(self, path: Path, text: str, speaker: int | str | None = None) -> Utterance:
        """A voice prompt: the clip's codes (and speaker vector, where the model has a speaker encoder)."""
        # leave at least half the context for the new utterance
        max_s = self.rt["max_positions"] / 2 / self.rt["frame_rate"]
        wave = read_reference(path, self.rt["sample_rate"], max_s)
        vector = self.speaker_vector(wave) if self.codec.get("speaker_encoder") else None
        return Utterance(text, speaker, self.encode_audio(wave), vector=vector)

    # -- generation ------------------------------------------------------------------------------
    def prepare(self, turns: list[Utterance], max_frames: int, sampling: Sampling, final: bool = True) -> Prepared | None:
        """The checked prompt of these turns (context first, the new utterance last). Not `final` (the
        last turn's text is the final part of one still being written, see live_text.py): its trailing
        ids known so far; None while that text does not fix the prompt yet."""
        self.contract.sampling_feeds(sampling)  # checks the settings against every sampling group
        if max_frames < 1:
            raise InputError(f"max frames must be >= 1, got {max_frames}")
        if not turns[-1].text.strip():
            if not final:
                return None
            raise InputError("text is empty")
        self.prompts.check(turns[-1])
        built = self.prompts.build(turns) if final else self.prompts.build(turns, final=False)
        if built is None:
            return None
        a, b = built
        n_prompt, limit = a.shape[1], self.rt["max_positions"]
        if n_prompt + 1 > limit:
            raise InputError(f"prompt is {n_prompt} tokens; this model's context is {limit} positions "
                             f"(text + context audio frames + generated frames); shorten the text or the reference")
        extra = {} if final else {"final": False}
        fits = (limit - n_prompt) // self.contract.steps  # a frame call may take several positions
        return Prepared(self.prompts.feeds(a, b), n_prompt, min(max_frames, fits),
                        self.prompts.trailing(turns, **extra), self.prompts.vectors(turns, **extra))

    def embed(self, prepared: Prepared) -> tuple[np.ndarray, list[dict]]:
        """The prompt's embeddings [1, S, H] (speaker vectors added) and, when the contract feeds text
        per frame, each frame's extra inputs (the last repeats)."""
        embeds = self.graphs.run(self.prompts.graph, prepared.feeds)[0]
        for row, vector in prepared.vectors:
            embeds[0, row] += vector
        per_frame = [{}] if prepared.trailing is None else self.embed_trailing(prepared.trailing)
        return embeds, per_frame

    def embed_trailing(self, ids: np.ndarray) -> list[dict]:
        """Each trailing text id's per-frame input."""
        if len(ids) == 0:
            return []
        text = self.graphs.run(self.prompts.graph, self.prompts.trailing_feeds(ids))[0][0]
        (entry,) = self.contract.per_frame  # one source, "trailing_text"
        return [{entry["input"]: text[i][None, None]} for i in range(text.shape[0])]

    def generate(self, text: str, speaker: int | str | None = None, context: list[Utterance] | None = None,
                 max_frames: int | None = None, sampling: Sampling = Sampling(), seed: int = 0,
                 decode: bool = True, language: str | None = None, instruct: str | None = None) -> Result:
        """The step-graph loop (one call per graph step): the debugging and parity path. speaker None:
        the model's default (as Speech); max_frames None: the model's (manifest generation.defaults)."""
        from voxport.runtime.steps import generate_steps

        t0 = time.perf_counter()
        speaker = self.default_speaker if speaker is None else speaker
        prepared = self.prepare([*(context or []), Utterance(text, speaker, language=language, instruct=instruct)],
                                self.contract.max_frames(max_frames), sampling)
        codes, stats = generate_steps(self, prepared, sampling, seed)
        t_gen = time.perf_counter()
        audio = self.decode(codes, seed) if decode else None
        return Result(codes, audio, prepared.tokens, {
            **stats, "prompt_tokens": prepared.tokens, "generate_s": t_gen - t0,
            "decode_s": time.perf_counter() - t_gen,
            "audio_s": 0.0 if audio is None else audio.shape[0] / self.rt["sample_rate"]})

    def decode(self, codes: np.ndarray, seed: int = 0) -> np.ndarray:
        """codes [frames, K] -> waveform, cut at the first frame the contract's stop rule ends on (the
        same rule the frame loop stops on: CSM all codebooks but the last, Qwen3-TTS codebook 0). A codec
        with noise (generation.codec.noise) draws it from `seed`, frame by frame as the stream does."""
        eos = [i for i, frame in enumerate(codes) if self.contract.is_stop(frame)]
        codes = codes[: eos[0]] if eos else codes
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        noise = codec_noise(self.codec.get("noise"), codec_rng(seed), codes.shape[0])
        return self.graphs.run(self.codec["decoder"], {"audio_codes": codes.T[None].astype(np.int64), **noise})[0][0, 0]
