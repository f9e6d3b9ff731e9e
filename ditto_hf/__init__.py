"""ditto-hf: the Hugging Face-native toolkit for the Ditto-1M instruction-based video-editing dataset."""

__version__ = "0.1.0"
