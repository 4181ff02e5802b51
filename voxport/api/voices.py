"""Saved voices: a reference clip encoded once by the artifact's codec encoder, kept as codes.

On disk, under the voices directory: NAME.json (model, transcript, speaker, frames, created) and
NAME.npy (codes [frames, K] int64, read with allow_pickle=False). A voice belongs to the model whose
codec encoded it: codes of one codec mean nothing to another.
"""

from __future__ import annotations

import json
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

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class VoiceStore:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not isinstance(name, str) or not NAME.match(name):
            raise bad(f"voice name {str(name)[:80]!r} is not allowed: 1-64 of A-Z a-z 0-9 _ -", "name",
                      "invalid_voice_name")
        root = self.root.resolve()
        meta, codes = (root / f"{name}.json").resolve(), (root / f"{name}.npy").resolve()
        if meta.parent != root or codes.parent != root:  # a symlinked name out of the directory
            raise bad(f"voice name {name!r} resolves outside the voice directory", "name", "invalid_voice_name")
        return meta, codes

    def get(self, name: str) -> tuple[dict, np.ndarray] | None:
        meta, codes = self._paths(name)
        if not meta.is_file() or not codes.is_file():
            return None
        return json.loads(meta.read_text()), np.load(codes, allow_pickle=False)

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.glob("*.json")):
            if NAME.match(p.stem) and p.with_suffix(".npy").is_file():
                out.append(json.loads(p.read_text()))
        return out

    def save(self, name: str, info: dict, codes: np.ndarray) -> dict:
        meta, path = self._paths(name)
        self.root.mkdir(parents=True, exist_ok=True)
        info = {"name": name, **info, "frames": int(codes.shape[0]), "created": int(time.time())}
        with self._lock:
            if meta.exists():
                raise ApiError(409, f"voice {name!r} exists; DELETE /v1/voices/{name} first", "name", "voice_exists")
            # codes first, metadata last (renamed into place): a voice is listed only when complete
            for target, write in ((path, lambda f: np.save(f, codes.astype(np.int64), allow_pickle=False)),
                                  (meta, lambda f: f.write(json.dumps(info).encode()))):
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.replace(tmp, target)
        return info

    def delete(self, name: str) -> bool:
        meta, codes = self._paths(name)
        with self._lock:
            found = meta.exists()
            meta.unlink(missing_ok=True)
            codes.unlink(missing_ok=True)
        return found


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
    model = form.get("model") or (app.models.speakable()[0] if len(app.models.speakable()) == 1 else None)
    name_, dtype = app.models.resolve(model)
    rt = await anyio.to_thread.run_sync(app.models.runtime, name_, dtype)
    if not rt.voice_prompts:
        raise bad(f"model {name_!r} has no codec encoder; it cannot take a voice prompt", "model")
    data = await upload.read()
    with tempfile.TemporaryDirectory() as tmp:  # the runtime reads a file: any format soundfile reads
        path = Path(tmp) / "reference"
        path.write_bytes(data)
        try:
            utt = await anyio.to_thread.run_sync(rt.reference, path, text, 0)
        except InputError as e:
            raise bad(str(e).replace(str(path), upload.filename or "file"), "file", "invalid_audio") from None
    seconds = round(utt.codes.shape[0] / rt.rt["frame_rate"], 2)
    info = app.voices.save(name, {"model": name_, "text": text, "speaker": 0, "seconds": seconds}, utt.codes)
    return JSONResponse(public(info), status_code=201)


async def list_voices(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [public(v) for v in request.app.state.voices.list()]})


async def delete_voice(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    if not request.app.state.voices.delete(name):
        raise ApiError(404, f"no voice named {name!r}", "name", "voice_not_found")
    return JSONResponse({"object": "voice.deleted", "name": name, "deleted": True})
