"""tiktoken plugin: registers `tinypython_2k` and `stdlib_2k` with `tiktoken.get_encoding`.

tiktoken imports every module of the `tiktoken_ext` namespace package and reads its
ENCODING_CONSTRUCTORS, so this file is found whenever the repository root is on sys.path or
the project is installed. The files come from the default store (MODEL_BASE_DIR);
`registry.tokenizer.get_encoding(name, store)` reads them from any other store.
"""


def _tinypython_2k() -> dict:
    # Imported here so that listing tiktoken's encodings does not import our packages.
    from registry.tokenizer import encoding_kwargs

    return encoding_kwargs("tinypython_2k")


def _stdlib_2k() -> dict:
    from registry.tokenizer import encoding_kwargs

    return encoding_kwargs("stdlib_2k")


ENCODING_CONSTRUCTORS = {"tinypython_2k": _tinypython_2k, "stdlib_2k": _stdlib_2k}
