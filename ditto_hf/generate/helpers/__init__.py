"""Model and data helpers that stages share: the VLM request/answer layer (``vlm``), point
tracking (``tracking``), the on-disk embedding bank (``embedding_bank``) and the Wan pipelines'
common clip, size and seed handling (``wan``). Helpers import the contract, never a stage."""
