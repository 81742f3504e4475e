# Stub of the C module _jsonpb_proof.c (prove a JSON line is already canonical jsonpb).
from typing import Any

class Schema:
    def setup(self, fields: tuple[tuple[bytes, int, bool, bool, int, Any], ...], /) -> None: ...
    def prove(self, line: bytes, /) -> int: ...

K_NEVER: int
K_STRING: int
K_BOOL: int
K_ENUM: int
K_INT32: int
K_UINT32: int
K_INT64: int
K_UINT64: int
K_TIMESTAMP: int
K_MESSAGE: int
