"""ditto-hf: the Hugging Face-native toolkit for the Ditto-1M instruction-based video-editing dataset."""

__version__ = "0.1.0"

from ditto_hf import registration  # noqa: E402,F401  (registers the "ditto_1m" builder name with datasets)
