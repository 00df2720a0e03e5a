"""Store access, catalogue, tokenizers and circuit-file reader for this project's data.

Importing this package only resolves the store root; submodules load torch or tiktoken
when imported themselves.
"""

from registry.store import MODEL_BASE_DIR, Store, default_store

__all__ = ["MODEL_BASE_DIR", "Store", "default_store"]
