# Stub of the C module _wiredict.c (protobuf wire bytes -> canonical dicts).
from typing import Any

class Fallback(ValueError): ...

class Decoder:
    def setup(self, fields: tuple[tuple[int, str, int, int, bool, bool, int, Any], ...], oneofs: int, /) -> None: ...
    def decode(self, data: bytes, /) -> dict[str, Any]: ...

K_INT32: int
K_INT64: int
K_UINT32: int
K_UINT64: int
K_SINT32: int
K_SINT64: int
K_BOOL: int
K_ENUM: int
K_FIXED32: int
K_SFIXED32: int
K_FIXED64: int
K_SFIXED64: int
K_FLOAT: int
K_DOUBLE: int
K_STRING: int
K_MESSAGE: int
K_TIMESTAMP: int
K_WRAPPER: int
K_CALL: int
