"""Request bodies turned into NDJSON for an append: gzip, CSV, multipart uploads and content types."""

from __future__ import annotations

import csv
import io
import json
import zlib

import tornado.httputil

from ..errors import IngestError, ParameterError, PayloadTooLargeError

# Content types the Events API reads as NDJSON: curl -d sends form-urlencoded, SDKs send JSON or NDJSON.
EVENT_TYPES = {
    "",
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "application/gzip",
}


def check_event_type(content_type: str) -> None:
    """IngestError unless the Events API reads this Content-Type as NDJSON."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in EVENT_TYPES:
        raise IngestError(
            f"Unsupported Content-Type '{media_type}': send NDJSON (application/x-ndjson or application/json)"
        )


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body, gunzipped when it says or looks gzip; IngestError when it claims gzip (Content-Encoding) and is not.

    A body that only looks gzip (its first bytes are gzip's, with no Content-Encoding) and does not decompress is
    taken as sent: lines that are not JSON go to quarantine, as any other, instead of refusing the whole body.
    """
    claimed = (encoding or "").lower() == "gzip"
    if not claimed and body[:2] != b"\x1f\x8b":
        return body
    try:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as e:
        if not claimed:
            return body
        raise IngestError(f"The body is not valid gzip ({e})") from None
    if len(data) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLargeError(f"The decompressed body is larger than the limit of {limit} bytes")
    if not decompressor.eof:
        if not claimed:
            return body
        raise IngestError("The body is not valid gzip: it ends before the gzip stream does")
    return data


def uploaded_file(request: tornado.httputil.HTTPServerRequest, limit: int) -> tuple[bytes, str]:
    """The file of a Data Sources API upload (multipart, or the raw body) and its file name."""
    if len(request.body) > limit:
        raise PayloadTooLargeError(f"The upload is larger than the limit of {limit}")
    for files in request.files.values():
        if files:
            return files[0].body, files[0].filename or ""
    if request.body and not request.headers.get("Content-Type", "").startswith("multipart/"):
        return request.body, ""
    raise ParameterError("Send the file as a multipart upload (e.g. curl -F csv=@file.csv or -F ndjson=@file.ndjson)")


def format_of(filename: str) -> str:
    """ndjson or csv, by the file's name (a .gz suffix ignored)."""
    name = filename.lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "ndjson"


def to_ndjson(data: bytes, fmt: str, columns: list[str]) -> bytes:
    """An uploaded file in `fmt` as NDJSON (CSV rows become objects); ParameterError for other formats."""
    if fmt == "csv":
        return csv_to_ndjson(data, columns)
    if fmt not in ("ndjson", "jsonl", "json"):
        raise ParameterError(f"Unsupported format '{fmt}': use format=ndjson or format=csv")
    return data


def csv_to_ndjson(data: bytes, columns: list[str]) -> bytes:
    """CSV rows as NDJSON objects, by header when the first row names the columns, else by position."""
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig", "replace")))
    rows = [row for row in reader if row]
    if rows and set(rows[0]) <= set(columns) and rows[0]:
        header, rows = rows[0], rows[1:]
    else:
        header = columns
    out = io.StringIO()
    for row in rows:
        record = {name: value for name, value in zip(header, row, strict=False) if value != ""}
        out.write(json.dumps(record) + "\n")
    return out.getvalue().encode()
