"""Secrets as Tinybird's Environment Variables API keeps them: per workspace, named, of type `secret`.

Each workspace keeps its secrets in `secrets.json` in its own folder of the data directory (the data
directory itself for the main workspace), with file permissions 0600, so they survive restarts and go
away with the workspace. Listings and answers never carry a value, as in Tinybird; only templates read
them (`tb_secret`).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...errors import NotFoundError, ParameterError, TbkitError
from .files import write_json

SECRETS_FILE = "secrets.json"
SECRET_TYPE = "secret"
MAX_SECRETS = 100  # per workspace, as in Tinybird
MAX_VALUE_BYTES = 8 * 1024  # 8 KB per value, as in Tinybird
MAX_NAME_LENGTH = 255
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_LOCK = threading.Lock()  # one writer at a time (a read-modify-write of one small file)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def check_name(name: str | None) -> str:
    """`name` when it is a valid secret name, else ParameterError saying what a name may hold."""
    if not name:
        raise ParameterError("missing name: the 'name' parameter is required (the secret's name)")
    if len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise ParameterError(
            f"Invalid secret name '{name[:MAX_NAME_LENGTH]}': use 1 to {MAX_NAME_LENGTH} letters, digits, '_', "
            "'.' or '-', starting with a letter, a digit or '_'"
        )
    return name


def check_value(value: str | None) -> str:
    """`value` when it is a non-empty value of at most 8 KB, else ParameterError."""
    if not value:
        raise ParameterError("missing value: the 'value' parameter is required (the secret's value, not empty)")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ParameterError("Variable maximum size is 8KB: the 'value' parameter is longer than 8192 bytes")
    return value


class SecretStore:
    """The secrets of one workspace, in `<folder>/secrets.json` (mode 0600)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / SECRETS_FILE
        self._values: tuple[tuple[int, int, int] | None, dict[str, str]] = (None, {})

    # -- reading --------------------------------------------------------------------------------------

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TbkitError(f"{self.path} is not valid JSON ({e.msg}); fix it or delete it (its secrets go)") from None
        secrets = content.get("secrets") if isinstance(content, dict) else None
        if not isinstance(secrets, dict):
            raise TbkitError(f"{self.path} has no 'secrets' object; fix it or delete it (its secrets go)")
        return secrets

    @staticmethod
    def _public(name: str, secret: dict[str, Any]) -> dict[str, Any]:
        """A secret as Tinybird shows it: everything but its value."""
        return {
            "name": name,
            "type": secret.get("type", SECRET_TYPE),
            "created_at": secret["created_at"],
            "updated_at": secret["updated_at"],
            "edited_by": secret.get("edited_by"),
        }

    def list(self) -> list[dict[str, Any]]:
        """Every secret, by name, without values."""
        return [self._public(name, secret) for name, secret in sorted(self._read().items())]

    def get(self, name: str) -> dict[str, Any] | None:
        """One secret without its value, or None."""
        secret = self._read().get(name)
        return None if secret is None else self._public(name, secret)

    def values(self) -> dict[str, str]:
        """Every secret's value by name, for rendering templates (never for answers).

        Read again only when the file changed (it is replaced atomically, so its inode changes), since
        endpoints ask on every call.
        """
        try:
            stat = self.path.stat()
            version: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            version = None
        if version != self._values[0]:
            values = {name: secret["value"] for name, secret in self._read().items()} if version else {}
            self._values = (version, values)
        return self._values[1]

    # -- writing --------------------------------------------------------------------------------------

    def _write(self, secrets: dict[str, dict[str, Any]]) -> None:
        """Replace the file atomically; it is created with mode 0600 and never readable by others."""
        write_json(self.path, {"secrets": secrets})

    def create(self, name: str, value: str, edited_by: str | None, kind: str = SECRET_TYPE) -> dict[str, Any]:
        """Add a secret; ParameterError when the name is taken, invalid, or the workspace has 100 already."""
        check_name(name)
        check_value(value)
        if kind != SECRET_TYPE:
            raise ParameterError(f"Invalid type '{kind}': supported variable types are: {SECRET_TYPE}")
        with _LOCK:
            secrets = self._read()
            if name in secrets:
                raise ParameterError(
                    f"Variable '{name}' already exists: update it with PUT /v0/variables/{name} or delete it first"
                )
            if len(secrets) >= MAX_SECRETS:
                raise ParameterError(f"A workspace holds at most {MAX_SECRETS} variables; delete one first")
            now = _now()
            secrets[name] = {
                "type": kind,
                "value": value,
                "created_at": now,
                "updated_at": now,
                "edited_by": edited_by,
            }
            self._write(secrets)
            return self._public(name, secrets[name])

    def update(self, name: str, value: str, edited_by: str | None) -> dict[str, Any]:
        """Change a secret's value; NotFoundError when there is no such secret."""
        check_value(value)
        with _LOCK:
            secrets = self._read()
            if name not in secrets:
                raise NotFoundError(f"Variable '{name}' not found: create it with POST /v0/variables")
            secrets[name] = {**secrets[name], "value": value, "updated_at": _now(), "edited_by": edited_by}
            self._write(secrets)
            return self._public(name, secrets[name])

    def delete(self, name: str) -> None:
        """Remove a secret; NotFoundError when there is no such secret."""
        with _LOCK:
            secrets = self._read()
            if name not in secrets:
                raise NotFoundError(f"Variable '{name}' not found")
            del secrets[name]
            self._write(secrets)
