"""tbkit: build, serve and check a Tinybird Forward project on chDB, Tinybird Local or Tinybird Cloud."""

__version__ = "0.1.0"
