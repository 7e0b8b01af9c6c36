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

    Feed the body with :meth:`feed` in chunks of any size (the result does not depend on where
    the chunks are cut), then call :meth:`close`. Each ``feed`` costs time proportional to its
    chunk, so feeding 64-256 KiB chunks keeps every step on the event loop short.

    Every string value of a ``"b64_json"`` key is decoded (a ``data:...;base64,`` prefix is
    stripped; the JSON escapes ``\\/``, ``\\n``, ``\\r``, ``\\t`` and ``\\u00XX`` are understood)
    and replaced by ``{"$payload": i}``; ``null`` and everything else are kept verbatim.
    """

    def __init__(self) -> None:
        self._out = bytearray()
        self._scan = 0  # position in _out from which the key may still start
        self._state = _TEXT
        self._payloads: list[bytearray] = []
        self._head = bytearray()
        self._escape_carry = b""  # an escape cut by a chunk boundary
        self._b64_carry = b""  # fewer than 4 base64 characters waiting for the next chunk
        self._padded = False
        self._closed = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the body.

        Raises:
            ValueError: a ``b64_json`` value is not valid base64.
            RuntimeError: called after :meth:`close`.
        """
        if self._closed:
            raise RuntimeError("feed() after close()")
        data = bytes(chunk)
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
                    self._head += data[pos:stop]
                    self._resolve_head(final=quote >= 0)
                else:
                    self._feed_body(data[pos:stop])
                if quote >= 0:
                    self._finish_value()
                    pos = quote + 1
                else:
                    pos = end

    def close(self) -> tuple[bytes, list[bytearray]]:
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
        base = len(out)
        out += data[pos:] if pos else data
        found = out.find(_KEY, self._scan)
        if found < 0:
            # Keep the tail that could be the start of a key cut by the chunk boundary.
            self._scan = max(self._scan, len(out) - len(_KEY) + 1)
            return len(data)
        after = found + len(_KEY)
        self._scan = after
        self._state = _AFTER_KEY
        # Give back what followed the key: it may be the start of a payload, which must not
        # stay in the skeleton.
        del out[after:]
        return pos + (after - base)

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
                self._payloads.append(bytearray())
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
            self._feed_body(bytes(head))
            return
        comma = head.find(b",")
        if comma < 0:
            if final or len(head) > _MAX_PREFIX:
                raise ValueError("b64_json value starts with 'data:' but has no ',' after it")
            return
        prefix = bytes(head[:comma]).replace(b"\\/", b"/")
        if not prefix.endswith(b";base64"):
            raise ValueError(f"b64_json data URI is not base64: {prefix[:60]!r}")
        rest = bytes(head[comma + 1 :])
        self._state = _BODY
        self._head = bytearray()
        self._feed_body(rest)

    def _feed_body(self, segment: bytes) -> None:
        if self._escape_carry:
            segment = self._escape_carry + segment
            self._escape_carry = b""
        if b"\\" in segment:
            segment = self._unescape(segment)
        if not segment:
            return
        if segment.translate(None, _B64_ALPHABET):
            bad = segment.translate(None, _B64_ALPHABET)[:10]
            raise ValueError(f"invalid base64 in b64_json value: unexpected bytes {bad!r}")
        data = self._b64_carry + segment
        usable = len(data) - len(data) % 4
        if usable:
            self._decode(data if usable == len(data) else data[:usable])
        self._b64_carry = data[usable:]

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

    def _decode(self, piece: bytes) -> None:
        if self._padded:
            raise ValueError("invalid base64 in b64_json value: data after '=' padding")
        eq = piece.find(b"=")
        if eq >= 0:
            # '=' may only end the last quartet; a2b_base64 would silently drop what follows.
            if eq < len(piece) - 2 or piece[eq:].strip(b"=") or piece.endswith(b"==="):
                raise ValueError("invalid base64 in b64_json value: misplaced '=' padding")
            self._padded = True
        try:
            self._payloads[-1] += binascii.a2b_base64(piece)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 in b64_json value: {exc}") from exc

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
        self._state = _TEXT
        self._scan = len(self._out)
