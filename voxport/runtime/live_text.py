"""One utterance's text while it is still being written (an LLM's output, a WebSocket's pieces).

Where the frame contract feeds text one token per frame (a per-frame input whose source is
"trailing_text"), speech can start before the text ends: frame n needs only the n-th text token, and a
token is final once more text follows it (the prompt builder's `stable`). `Speech` reads a LiveText as
far as it is final, waits (pauses, no stop frame) when its frames outrun the text, and ends it only
after `close()`. The codes equal those of the whole text given at once."""

from __future__ import annotations

import threading
from typing import Callable


class LiveText:
    def __init__(self, text: str = ""):
        self._text, self._closed = text, False
        self._changed = threading.Condition()

    def __str__(self) -> str:
        return self._text

    def set(self, text: str) -> None:
        """The whole text so far (it only grows: the start already given stays the same)."""
        with self._changed:
            self._text = text
            self._changed.notify_all()

    def close(self, text: str | None = None) -> None:
        """The text is complete (optionally its final form)."""
        with self._changed:
            if text is not None:
                self._text = text
            self._closed = True
            self._changed.notify_all()

    def read(self) -> tuple[str, bool]:
        with self._changed:
            return self._text, self._closed

    def wait_closed(self, stop: Callable[[], bool], poll: float = 0.05) -> str | None:
        """The complete text; None when `stop()` held first."""
        with self._changed:
            while not self._closed and not stop():
                self._changed.wait(poll)
            return self._text if self._closed else None

    def wait(self, seen: str, stop: Callable[[], bool], poll: float = 0.05) -> tuple[str, bool]:
        """The text once it differs from `seen` or is closed; returns early when `stop()` holds."""
        with self._changed:
            while self._text == seen and not self._closed and not stop():
                self._changed.wait(poll)  # `stop` (a cancel) has no notification of its own
            return self._text, self._closed
