"""The shared Flask-Caching instance and the backends it may use.

Data functions in `webapp.data` are memoized with `cache.memoize()`. Their arguments are ids (model,
task, sweep, k, node) plus a `FileIdentity` of the store file, so a rewritten file gets a new key.
They are never tensors or models, because memoize keys come from repr(), which is no content key.

Cached values are JSON, not pickle: both backends below swap cachelib's pickle serializer for JSON,
so reading the cache cannot run code. Memoized functions therefore return JSON-native values
(dicts with string keys, lists, numbers, strings).

Configuration (environment):
- `CIRCUIT_VIEWER_CACHE_TYPE`: `FileSystemCache` (default; shared by the workers of one host) or
  `RedisCache` (shared by several hosts, needs the `redis` package).
- `CIRCUIT_VIEWER_CACHE_DIR`: the FileSystemCache folder (default: a folder under the system temp dir).
- `CIRCUIT_VIEWER_REDIS_URL`: the Redis URL for RedisCache (default `redis://127.0.0.1:6379/0`).
- `CIRCUIT_VIEWER_CACHE_TIMEOUT`: entry lifetime in seconds (default 3600; 0 keeps entries forever).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachelib.serializers import JSONSerializer
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.filesystemcache import FileSystemCache
from flask_caching.backends.rediscache import RedisCache

logger = logging.getLogger(__name__)

CACHE_TYPES = {
    "FileSystemCache": "webapp.cache.JsonFileSystemCache",
    "RedisCache": "webapp.cache.JsonRedisCache",
}

cache = Cache()


class JsonFileSystemCache(FileSystemCache):
    """Flask-Caching's FileSystemCache storing values as JSON instead of pickle."""

    serializer = JSONSerializer()


class _JsonRedisSerializer(JSONSerializer):
    # Redis stores plain integers as ASCII so that INCR works; everything else is JSON.
    def dumps(self, value: Any, *args: Any, **kwargs: Any) -> bytes | None:
        if type(value) is int:
            return str(value).encode("ascii")
        return super().dumps(value, *args, **kwargs)

    def loads(self, bvalue: Any, *args: Any, **kwargs: Any) -> Any:
        if bvalue is None:
            return None
        return super().loads(bvalue, *args, **kwargs)


class JsonRedisCache(RedisCache):
    """Flask-Caching's RedisCache storing values as JSON instead of pickle."""

    serializer = _JsonRedisSerializer()


def cache_config_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask-Caching config from the `CIRCUIT_VIEWER_CACHE_*` environment variables."""
    environ = dict(os.environ if environ is None else environ)
    cache_type = environ.get("CIRCUIT_VIEWER_CACHE_TYPE", "FileSystemCache")
    if cache_type not in CACHE_TYPES:
        raise ValueError(
            f"invalid CIRCUIT_VIEWER_CACHE_TYPE={cache_type!r}: use one of {', '.join(CACHE_TYPES)}"
        )
    timeout_text = environ.get("CIRCUIT_VIEWER_CACHE_TIMEOUT", "3600")
    try:
        timeout = int(timeout_text)
    except ValueError as err:
        raise ValueError(
            f"invalid CIRCUIT_VIEWER_CACHE_TIMEOUT={timeout_text!r}: expected whole seconds"
        ) from err

    config: dict[str, Any] = {
        "CACHE_TYPE": CACHE_TYPES[cache_type],
        "CACHE_DEFAULT_TIMEOUT": timeout,
    }
    if cache_type == "FileSystemCache":
        default_dir = Path(tempfile.gettempdir()) / "circuit-viewer-cache"
        config["CACHE_DIR"] = environ.get("CIRCUIT_VIEWER_CACHE_DIR", str(default_dir))
        config["CACHE_THRESHOLD"] = 2000
    else:
        config["CACHE_REDIS_URL"] = environ.get(
            "CIRCUIT_VIEWER_REDIS_URL", "redis://127.0.0.1:6379/0"
        )
    return config


def init_cache(server: Flask, config: dict[str, Any] | None = None) -> Cache:
    """Attach the shared cache to the Flask server, from `config` or the environment."""
    config = cache_config_from_env() if config is None else config
    cache.init_app(server, config=config)
    logger.info(
        "cache: %s at %s",
        config["CACHE_TYPE"],
        config.get("CACHE_DIR") or config.get("CACHE_REDIS_URL"),
    )
    return cache


@dataclass(frozen=True)
class FileIdentity:
    """Cache identity of a store file: its path, size and mtime in nanoseconds."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Stat `path`; raise FileNotFoundError naming it when it is missing."""
        stat = path.stat()
        return cls(str(path), stat.st_size, stat.st_mtime_ns)
