"""ditto-hf: the Hugging Face-native toolkit for the Ditto-1M instruction-based video-editing dataset.

``import ditto_hf`` makes ``load_dataset("ditto_1m", ...)`` work (see :mod:`ditto_hf.registration`)
without importing ``datasets`` itself.
"""

__version__ = "0.1.0"

from ditto_hf.registration import register, register_when_datasets_is_imported  # noqa: E402

register_when_datasets_is_imported()

__all__ = ["__version__", "register"]
