"""WCP360: a security-first, multi-tenant hosting control plane."""

__version__ = "0.1.0"
