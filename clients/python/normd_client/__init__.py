"""Python client for normd, the normalize → validate → compress sidecar.

    from normd_client import NormdClient
    normd = NormdClient("/run/normd/normd.sock", fallback=lambda body, ctx: in_app_norm(body))
    result = normd.norm(raw_body, key=order_id)
"""
from ._rollout import bucket_of, fnv1a32
from .aio import AsyncNormdClient
from .client import REASONS, FallbackContext, Flag, NormdClient, Result, parse_flags, sha256_digest
from .errors import NormdClosed, NormdError, NormdUnavailable

__all__ = [
    "AsyncNormdClient", "FallbackContext", "Flag", "NormdClient", "NormdClosed", "NormdError",
    "NormdUnavailable", "REASONS", "Result", "bucket_of", "fnv1a32", "parse_flags", "sha256_digest",
]
