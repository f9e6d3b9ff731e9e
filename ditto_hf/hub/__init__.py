"""Publishing triplets to the Hub as parquet configs, and checking repos the way the viewer sees them."""

from ditto_hf.hub.check import Finding, check
from ditto_hf.hub.publish import PublishResult, publish

__all__ = ["Finding", "PublishResult", "check", "publish"]
