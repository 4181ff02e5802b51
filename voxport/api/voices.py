"""Saved voices: a reference clip encoded once by the artifact's encoders, kept as a voice prompt.

On disk, under the voices directory: NAME.json (model, transcript, speaker, frames, speaker_vector,
created), NAME.npy (codes [frames, K] int64) and, where the model has a speaker encoder (Qwen3-TTS
Base), NAME.speaker.npy (its vector [hidden] float32); arrays are read with allow_pickle=False. A
voice belongs to the model whose codec encoded it: codes of one codec mean nothing to another.
Voices saved before speaker vectors were kept have no `speaker_vector` key: codes only.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import anyio
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from voxport.api.bodies import read_body, replay
from voxport.api.errors import ApiError, bad
from voxport.errors import InputError
from voxport.runtime.chunking import check_utf8
from voxport.runtime.prompt import Utterance

log = logging.getLogger("voxport.serve")

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class VoiceStore:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        """NAME.json, NAME.npy (codes), NAME.speaker.npy (speaker vector): '.' is not in a name, so
        no voice's files are another's."""
        if not isinstance(name, str) or not NAME.match(name):
            raise bad(f"voice name {str(name)[:80]!r} is not allowed: 1-64 of A-Z a-z 0-9 _ -", "name",
                      "invalid_voice_name")
        root = self.root.resolve()
        paths = tuple((root / f"{name}{suffix}").resolve() for suffix in (".json", ".npy", ".speaker.npy"))
        if any(p.parent != root for p in paths):  # a symlinked name out of the directory
            raise bad(f"voice name {name!r} resolves outside the voice directory", "name", "invalid_voice_name")
        return paths

    @staticmethod
    def _complete(info: dict, codes: Path, vector: Path) -> bool:
        return codes.is_file() and (not info.get("speaker_vector") or vector.is_file())

    def get(self, name: str) -> tuple[dict, Utterance] | None:
        """The voice's metadata and its reference utterance (the context a prompt takes), or None.
        A voice whose files are damaged (the directory may be shared, or edited by hand) is a 409
        naming it, never a 500."""
        meta, codes, vector = self._paths(name)
        if not meta.is_file():
            return None
        try:
            info = _info(meta)
            if not self._complete(info, codes, vector):
                return None
            arr = np.load(codes, allow_pickle=False)
            vec = np.load(vector, allow_pickle=False) if info.get("speaker_vector") else None
            if arr.ndim != 2 or arr.dtype.kind != "i" or (vec is not None and (vec.ndim != 1 or vec.dtype.kind != "f")):
                raise ValueError(f"arrays of shape {arr.shape} {arr.dtype}")
        except (OSError, ValueError) as e:
            log.warning("voice %s in %s is damaged: %s", name, self.root, str(e)[:200])
            raise ApiError(409, f"voice {name!r} is damaged on the server ({str(e)[:120]}); DELETE it and save it "
                           "again", "voice", "voice_damaged") from None
        return info, Utterance(info["text"], info["speaker"], arr, vector=vec)

    def list(self) -> list[dict]:
        """Every complete voice; a damaged one is left out (and logged), not the whole listing."""
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.glob("*.json")):
            if NAME.match(p.stem):
                try:
                    info = _info(p)
                except (OSError, ValueError) as e:
                    log.warning("skipping damaged voice file %s: %s", p, str(e)[:200])
                    continue
                if self._complete(info, p.with_suffix(".npy"), p.with_suffix(".speaker.npy")):
                    out.append(info)
        return out

    def save(self, name: str, info: dict, ref: Utterance) -> dict:
        meta, codes, vector = self._paths(name)
        self.root.mkdir(parents=True, exist_ok=True)
        info = {"name": name, **info, "speaker": ref.speaker, "frames": int(ref.codes.shape[0]),
                "speaker_vector": ref.vector is not None, "created": int(time.time())}
        files = [(codes, _npy(ref.codes.astype(np.int64)))]
        if ref.vector is not None:
            files.append((vector, _npy(ref.vector.astype(np.float32))))
        files.append((meta, json.dumps(info).encode()))
        with self._lock:
            if meta.exists():
                raise ApiError(409, f"voice {name!r} exists; DELETE /v1/voices/{name} first", "name", "voice_exists")
            # arrays first, metadata last (each renamed into place): a voice is listed only when complete
            for target, data in files:
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
        return info

    def delete(self, name: str) -> bool:
        meta, codes, vector = self._paths(name)
        with self._lock:
            found = meta.exists()
            for p in (meta, codes, vector):  # metadata first: a voice half deleted is not listed
                p.unlink(missing_ok=True)
        return found


FIELDS = {"name": str, "model": str, "text": str, "frames": int, "seconds": (int, float), "created": int}


def _info(meta: Path) -> dict:
    """A voice's metadata, with the fields the API reads; ValueError when it is not."""
    try:
        info = json.loads(meta.read_bytes())
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    for key, kind in FIELDS.items():
        if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise ValueError(f"field {key!r} missing or not a {getattr(kind, '__name__', 'number')}")
    if not isinstance(info.get("speaker"), (int, str, type(None))):
        raise ValueError("field 'speaker' is not an integer, a name or null")
    return info


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def public(info: dict) -> dict:
    return {"object": "voice", **{k: info[k] for k in ("name", "model", "text", "frames", "seconds", "created")}}


async def create_voice(request: Request) -> JSONResponse:
    """multipart/form-data: file (audio), text (its transcript), name, model (optional when one is served)."""
    app = request.app.state
    body = await read_body(request, app.config.max_upload)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad("send multipart/form-data with file, text and name fields")
    form = await Request(request.scope, replay(body)).form(max_files=1, max_fields=8)
    upload, text, name = form.get("file"), form.get("text"), form.get("name")
    if upload is None or isinstance(upload, str):
        raise bad("file is required: the reference audio", "file")
    app.voices._paths(name)  # name checked before any work
    if not isinstance(text, str) or not text.strip():
        raise bad("text is required: the transcript of the reference audio", "text")
    try:
        check_utf8(text, "text")
    except InputError as e:
        raise bad(str(e), "text") from None
    if len(text) > app.config.max_transcript_chars:
        raise bad(f"text is {len(text)} characters; a reference clip's transcript is at most "
                  f"{app.config.max_transcript_chars}", "text", "input_too_long")
    model = form.get("model") or (app.models.speakable()[0] if len(app.models.speakable()) == 1 else None)
    name_, dtype = app.models.resolve(model)
    rt = await anyio.to_thread.run_sync(app.models.runtime, name_, dtype)
    try:  # the speaker a reference takes, as `voxport speak --ref-audio`: CSM's 0, None for a Base model
        speaker = rt.check_voice(None, reference=True)
    except InputError as e:
        raise bad(str(e), "model") from None
    data = await upload.read()
    with tempfile.TemporaryDirectory() as tmp:  # the runtime reads a file: any format soundfile reads
        path = Path(tmp) / "reference"
        path.write_bytes(data)
        del data
        try:
            ref = await anyio.to_thread.run_sync(rt.reference, path, text, speaker)
        except InputError as e:
            raise bad(str(e).replace(str(path), upload.filename or "file"), "file", "invalid_audio") from None
    seconds = round(ref.codes.shape[0] / rt.rt["frame_rate"], 2)
    info = app.voices.save(name, {"model": name_, "text": text, "seconds": seconds}, ref)
    return JSONResponse(public(info), status_code=201)


async def list_voices(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [public(v) for v in request.app.state.voices.list()]})


async def delete_voice(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    if not request.app.state.voices.delete(name):
        raise ApiError(404, f"no voice named {name!r}", "name", "voice_not_found")
    return JSONResponse({"object": "voice.deleted", "name": name, "deleted": True})
