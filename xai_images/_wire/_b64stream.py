"""Incremental decoding of ``b64_json`` values while a JSON answer streams in.

A ``b64_json`` answer for ten 1 MB images is a ~14 MB JSON document. ``json.loads`` on it blocks
the event loop for tens of milliseconds and ``b64decode`` on each string adds more, and together
they hold the body, the parsed strings and the decoded bytes at once. The scanner instead takes
the body chunk by chunk, decodes every ``b64_json`` string value as it arrives (a few hundred
microseconds per 256 KiB chunk) and keeps only the small rest of the document, in which each
value is replaced by ``{"$payload": i}``. The caller then ``json.loads`` that small skeleton.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable

__all__ = ["PAYLOAD_KEY", "B64ResponseScanner"]

PAYLOAD_KEY = "$payload"
"""Key of the placeholder object that replaces each ``b64_json`` string in the skeleton."""

_KEY = b'"b64_json"'
_WHITESPACE = b" \t\r\n"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# A "data:image/png;base64," prefix is short; a value that starts with "data:" and has no comma
# within this many bytes is not a data URI we understand.
_MAX_PREFIX = 256
# Escapes a JSON encoder may emit inside a base64 string. Line breaks are MIME-style wrapping and
# carry no data.
_SIMPLE_ESCAPES = {b"/": b"/", b"n": b"", b"r": b"", b"t": b""}
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|[^u])")
# Typed loosely: the 3.10 stubs do not know strict_mode.
_a2b_base64: Callable[..., bytes] = binascii.a2b_base64


def _has_strict_mode() -> bool:
    try:
        _a2b_base64(b"", strict_mode=True)
    except TypeError:  # Python 3.10
        return False
    return True


# On 3.11+ a2b_base64 validates the alphabet and the padding while decoding, which saves a
# separate pass over every byte.
_STRICT = _has_strict_mode()

# Scanner states.
_TEXT = 0  # ordinary JSON text, looking for the key
_AFTER_KEY = 1  # after "b64_json", expecting optional whitespace then ':'
_AFTER_COLON = 2  # after ':', expecting optional whitespace then '"' (or anything else: null)
_HEAD = 3  # first bytes of a value: is it a data: URI?
_BODY = 4  # inside the base64 text of a value


def _unescape_match(match: re.Match[bytes]) -> bytes:
    esc = match.group(1)
    if esc in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[esc]
    if len(esc) == 5:
        code = int(esc[1:], 16)
        if code < 0x80:
            char = bytes([code])
            return b"" if char in _WHITESPACE else char
    raise ValueError(f"invalid escape {match.group(0)!r} inside a b64_json value")


class B64ResponseScanner:
    """Split a JSON answer into a small skeleton and the decoded ``b64_json`` payloads.

    Feed the body with `feed` in chunks of any size (the result does not depend on where
    the chunks are cut), then call `close`. Each ``feed`` costs time proportional to its
    chunk, so feeding 64-256 KiB chunks keeps every step on the event loop short.

    Every string value of a ``"b64_json"`` key is decoded (a ``data:...;base64,`` prefix is
    stripped; the JSON escapes ``\\/``, ``\\n``, ``\\r``, ``\\t`` and ``\\u00XX`` are understood)
    and replaced by ``{"$payload": i}``; ``null`` and everything else are kept verbatim.
    """

    def __init__(self) -> None:
        self._out = bytearray()
        self._scan = 0  # position in _out from which the key may still start
        self._state = _TEXT
        self._payloads: list[bytes] = []
        # Decoded pieces of the value being read, joined once when it ends (a bytearray grown
        # piece by piece would be reallocated, and turned into bytes, copied once more).
        self._pieces: list[bytes] = []
        self._head = bytearray()
        self._escape_carry = b""  # an escape cut by a chunk boundary
        self._b64_carry = b""  # fewer than 4 base64 characters waiting for the next chunk
        self._padded = False
        self._closed = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the body.

        Raises:
            ValueError: a ``b64_json`` value is not valid base64.
            RuntimeError: called after `close`.
        """
        if self._closed:
            raise RuntimeError("feed() after close()")
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _TEXT:
                pos = self._feed_text(data, pos)
            elif state in (_AFTER_KEY, _AFTER_COLON):
                pos = self._feed_separator(data, pos)
            else:
                quote = data.find(b'"', pos)
                stop = end if quote < 0 else quote
                if state == _HEAD:
                    self._head += memoryview(data)[pos:stop]
                    self._resolve_head(final=quote >= 0)
                else:
                    self._feed_body(data, pos, stop)
                if quote >= 0:
                    self._finish_value()
                    pos = quote + 1
                else:
                    pos = end

    def close(self) -> tuple[bytes, list[bytes]]:
        """Finish and return ``(skeleton JSON bytes, decoded payloads in order)``.

        Raises:
            ValueError: the body ended inside a ``b64_json`` value.
        """
        if self._state in (_HEAD, _BODY):
            raise ValueError("the answer ended inside a b64_json value (unterminated string)")
        self._closed = True
        return bytes(self._out), self._payloads

    # -- JSON text outside payloads ------------------------------------------------------------

    def _feed_text(self, data: bytes, pos: int) -> int:
        out = self._out
        # A key cut by the previous chunk boundary: its start is in the tail of _out.
        tail_start = max(self._scan, len(out) - len(_KEY) + 1)
        if tail_start < len(out):
            tail = len(out) - tail_start
            probe = bytes(out[tail_start:]) + data[pos : pos + len(_KEY) - 1]
            found = probe.find(_KEY)
            if found >= 0 and not self._escaped(data, pos, found - tail):
                return self._after_key(data, pos, pos + found + len(_KEY) - tail)
        # Search the chunk itself rather than _out, so that the text after the key (the start
        # of a payload, often most of the chunk) is never copied into the skeleton.
        found = data.find(_KEY, pos)
        while found >= 0 and self._escaped(data, pos, found - pos):
            found = data.find(_KEY, found + 1)
        if found < 0:
            out += memoryview(data)[pos:]
            self._scan = max(self._scan, len(out) - len(_KEY) + 1)
            return len(data)
        return self._after_key(data, pos, found + len(_KEY))

    def _escaped(self, data: bytes, pos: int, offset: int) -> bool:
        """Whether the quote at ``offset`` from ``data[pos]`` (negative: in the tail of _out) is
        escaped, i.e. preceded by an odd number of backslashes: then ``"b64_json"`` is text
        inside a string (a key such as ``"\\"b64_json"``), not a key of its own."""
        count = 0
        index = pos + offset - 1
        while index >= pos and data[index] == 0x5C:
            count += 1
            index -= 1
        if index < pos:
            out = self._out
            index = len(out) + (index - pos)
            while index >= 0 and out[index] == 0x5C:
                count += 1
                index -= 1
        return count % 2 == 1

    def _after_key(self, data: bytes, pos: int, after: int) -> int:
        self._out += memoryview(data)[pos:after]
        self._scan = len(self._out)
        self._state = _AFTER_KEY
        return after

    def _feed_separator(self, data: bytes, pos: int) -> int:
        end = len(data)
        while pos < end:
            byte = data[pos : pos + 1]
            if byte in _WHITESPACE:
                self._out += byte
                pos += 1
            elif self._state == _AFTER_KEY and byte == b":":
                self._out += byte
                self._state = _AFTER_COLON
                pos += 1
            elif self._state == _AFTER_COLON and byte == b'"':
                self._out += b'{"' + PAYLOAD_KEY.encode() + b'": '
                self._out += str(len(self._payloads)).encode() + b"}"
                self._pieces = []
                self._state = _HEAD
                self._head = bytearray()
                self._padded = False
                return pos + 1
            else:
                # Not a string value (null, or "b64_json" was itself a value): plain text again.
                self._state = _TEXT
                self._scan = len(self._out)
                return pos
        return pos

    # -- inside a value ------------------------------------------------------------------------

    def _resolve_head(self, *, final: bool) -> None:
        head = self._head
        if len(head) < 5 and not final:
            return
        if not head.startswith(b"data:"):
            self._state = _BODY
            self._head = bytearray()
            self._feed_body(bytes(head), 0, len(head))
            return
        comma = head.find(b",")
        if comma < 0:
            if final or len(head) > _MAX_PREFIX:
                raise ValueError("b64_json value starts with 'data:' but has no ',' after it")
            return
        prefix = bytes(head[:comma]).replace(b"\\/", b"/")
        if not prefix.endswith(b";base64"):
            raise ValueError(f"b64_json data URI is not base64: {prefix[:60]!r}")
        self._state = _BODY
        self._head = bytearray()
        self._feed_body(bytes(head), comma + 1, len(head))

    def _feed_body(self, data: bytes, start: int, stop: int) -> None:
        """Decode ``data[start:stop]``, base64 text of the current value, without copying it."""
        if self._escape_carry or data.find(b"\\", start, stop) >= 0:
            segment = self._escape_carry + data[start:stop]
            self._escape_carry = b""
            data = self._unescape(segment) if b"\\" in segment else segment
            start, stop = 0, len(data)
        if start == stop:
            return
        if not _STRICT:
            bad = data[start:stop].translate(None, _B64_ALPHABET)
            if bad:
                raise ValueError(f"invalid base64 in b64_json value: unexpected bytes {bad[:10]!r}")
        carry = self._b64_carry
        if carry:
            need = 4 - len(carry)
            if stop - start < need:
                self._b64_carry = carry + data[start:stop]
                return
            self._b64_carry = b""
            self._decode(carry + data[start : start + need])
            start += need
        usable = (stop - start) - (stop - start) % 4
        if usable:
            whole = start == 0 and usable == len(data)
            self._decode(data if whole else memoryview(data)[start : start + usable])
        self._b64_carry = data[start + usable : stop]

    def _unescape(self, segment: bytes) -> bytes:
        # An escape may be cut at the end of the segment: keep it for the next one.
        last = segment.rfind(b"\\", max(0, len(segment) - 6))
        if last >= 0:
            tail = segment[last:]
            complete = (len(tail) >= 2 and tail[1:2] != b"u") or len(tail) >= 6
            if not complete:
                self._escape_carry = tail
                segment = segment[:last]
        segment = segment.replace(b"\\/", b"/")
        if b"\\" in segment:
            segment = _ESCAPE.sub(_unescape_match, segment)
            if b"\\" in segment:
                raise ValueError("invalid escape inside a b64_json value")
        return segment

    def _decode(self, piece: bytes | memoryview) -> None:
        """Decode whole quartets of base64 text and keep the bytes."""
        if self._padded:
            raise ValueError("invalid base64 in b64_json value: data after '=' padding")
        if _STRICT:
            try:
                decoded = _a2b_base64(piece, strict_mode=True)
            except binascii.Error as exc:
                bad = bytes(piece).translate(None, _B64_ALPHABET)[:10]
                detail = f"unexpected bytes {bad!r}" if bad else str(exc)
                raise ValueError(f"invalid base64 in b64_json value: {detail}") from exc
            # Strict mode refuses '=' anywhere but at the end of the piece; a later piece
            # must not follow it.
            self._padded = piece[-1] == 0x3D
        else:
            text = bytes(piece)
            eq = text.find(b"=")
            if eq >= 0:
                # '=' may only end the last quartet; a2b_base64 would silently drop what
                # follows.
                if eq < len(text) - 2 or text[eq:].strip(b"=") or text.endswith(b"==="):
                    raise ValueError("invalid base64 in b64_json value: misplaced '=' padding")
                self._padded = True
            try:
                decoded = binascii.a2b_base64(text)
            except binascii.Error as exc:
                raise ValueError(f"invalid base64 in b64_json value: {exc}") from exc
        self._pieces.append(decoded)

    def _finish_value(self) -> None:
        if self._state == _HEAD:
            self._resolve_head(final=True)
        if self._escape_carry:
            raise ValueError("b64_json value ends inside an escape sequence")
        carry = self._b64_carry
        self._b64_carry = b""
        if carry:
            if len(carry) == 1:
                raise ValueError("invalid base64 in b64_json value: truncated (length % 4 == 1)")
            # Unpadded base64 (some encoders drop the '='): complete it.
            self._decode(carry + b"=" * (4 - len(carry)))
        pieces, self._pieces = self._pieces, []
        # join() of a single bytes object returns it as is: no copy for a one-piece value.
        self._payloads.append(b"".join(pieces))
        self._state = _TEXT
        self._scan = len(self._out)
