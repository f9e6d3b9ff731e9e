"""Opening a ``datasets`` source named on the command line: ``NAME[:CONFIG][@SPLIT]``.

NAME is a Hub repo or a local folder of parquet / arrow files. Shared by the commands that read
triplets from a dataset (``eval``, ``export``); each checks the columns it needs.
"""

from __future__ import annotations

from ditto_hf.errors import DittoError


def parse_dataset_spec(spec: str) -> tuple[str, str | None, str]:
    """``(name, config or None, split)`` of ``NAME[:CONFIG][@SPLIT]`` (split defaults to ``train``)."""
    name, _, split = spec.partition("@")
    path, _, config = name.partition(":")
    return path, config or None, split or "train"


def stream_dataset(spec: str, not_loadable: str):
    """``(stream, split)``: the ``IterableDataset`` of ``spec`` with every video and image column
    left undecoded (``{"bytes", "path"}``). A source that does not load is a :class:`DittoError`
    starting with ``not_loadable`` and giving the reason in one line."""
    import datasets

    path, config, split = parse_dataset_spec(spec)
    try:
        stream = datasets.load_dataset(path, config, split=split, streaming=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise DittoError(f"{not_loadable} ({type(exc).__name__}: {reason})") from exc
    return undecoded(stream), split


def undecoded(stream):
    """``stream`` with its ``datasets.Video`` / ``datasets.Image`` columns cast to ``decode=False``."""
    import datasets

    for column, feature in (stream.features or {}).items():
        if isinstance(feature, (datasets.Video, datasets.Image)):
            stream = stream.cast_column(column, type(feature)(decode=False))
    return stream
