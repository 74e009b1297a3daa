"""Reading plan input safely: size limit before parsing, binary and encoding checks.

A plan is small text. Anything else (a 10 MB file, a binary, Latin-1 bytes) is refused here with a
message naming the file, before any parser sees it.
"""

from __future__ import annotations

from pathlib import Path

from zolab.platform.errors import PlanError

MAX_BYTES = 1_000_000
_TEXT_CONTROLS = {9, 10, 12, 13}


def read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes; refuses missing files and files over :data:`MAX_BYTES` without reading them."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PlanError.single("file not found", file=name) from None
    except OSError as exc:
        raise PlanError.single(f"cannot read file: {exc.strerror}", file=name) from None
    if path.is_dir():
        raise PlanError.single("is a directory, not a plan file", file=name)
    if size > MAX_BYTES:
        raise PlanError.single(f"file is {size:,} bytes; plans are limited to {MAX_BYTES:,} bytes", file=name)
    with path.open("rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:  # grew while reading
        raise PlanError.single(f"file exceeds {MAX_BYTES:,} bytes", file=name)
    return data


def decode(data: bytes, name: str) -> str:
    """UTF-8 text (BOM stripped); binary data and other encodings are refused with a place."""
    if len(data) > MAX_BYTES:
        raise PlanError.single(f"input is {len(data):,} bytes; plans are limited to {MAX_BYTES:,} bytes", file=name)
    head = data[:8192]
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    if b"\x00" in head or (head and controls / len(head) > 0.05):
        raise PlanError.single("looks like a binary file (NUL or control bytes), not a text plan", file=name, line=1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PlanError.single(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; save the file as UTF-8",
            file=name, line=line, column=column,
        ) from None


def check_text(text: str, name: str) -> str:
    """The same checks for text given directly (e.g. an upload in the UI)."""
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_BYTES:
        raise PlanError.single(f"input is {len(encoded):,} bytes; plans are limited to {MAX_BYTES:,} bytes", file=name)
    if "\x00" in text[:8192]:
        raise PlanError.single("looks like binary data (NUL bytes), not a text plan", file=name, line=1)
    return text.removeprefix("\ufeff")
