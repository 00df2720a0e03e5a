"""Where the project's models, circuits and tokenizers are, and how to read them.

Importing this package only resolves the store root; submodules load torch or tiktoken
when imported themselves.
"""

from registry.store import MODEL_BASE_DIR, Store, default_store

__all__ = ["MODEL_BASE_DIR", "Store", "default_store"]
