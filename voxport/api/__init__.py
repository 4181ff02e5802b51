"""The speech API that `voxport serve` adds beside the page: OpenAI's /v1/audio/speech shape, saved
voices, a WebSocket for text that arrives in pieces. One loaded runtime per artifact and precision,
shared by every request; per-request state lives in the request's own `Speech`."""
