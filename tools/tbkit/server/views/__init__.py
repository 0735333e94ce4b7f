"""Handlers of Tinybird's public HTTP API, one module per resource."""
