"""The API's error shape: ``{"error": {"code": ..., "message": ...}}`` with the right status."""

from flask import jsonify, request


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def api_error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="berth"'
    return response


def is_api_request() -> bool:
    return request.path == "/api/v2" or request.path.startswith("/api/v2/")
