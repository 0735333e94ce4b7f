"""The embedded engine: a Tinybird project's tables built and written in-process on chDB."""

from .workspace import AppendResult, Engine, MemoryLimits, Workspace

__all__ = ["AppendResult", "Engine", "MemoryLimits", "Workspace"]
