"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, one line each."""

from __future__ import annotations

from starlette.responses import JSONResponse

TYPES = {503: "server_error", 500: "server_error"}  # every other status: invalid_request_error


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        # a message may quote the request (a lone surrogate from JSON's "\ud800" would make the
        # response unencodable): keep it valid UTF-8
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)
