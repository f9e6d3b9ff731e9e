"""Score instruction-based video edits the way the paper's Table 1 does: CLIP-T, CLIP-F, VLM score.

```python
from ditto_hf.evaluate import EvalSettings, evaluate

report = evaluate(["outputs/editto", "runs/r1"], EvalSettings(judge=None), instructions="bench.jsonl", source="clips/")
report.to_dict()["systems"][0]["scores"]   # {"edits": 250, "clip_t": ..., "clip_f": ..., "clip_f_all_pairs": ...}
report.write_json("scores.json")
```

- :mod:`~ditto_hf.evaluate.sources`: what EDITED can be (folder + JSONL, run directory, datasets source);
- :mod:`~ditto_hf.evaluate.clip_scores`: CLIP-T and CLIP-F;
- :mod:`~ditto_hf.evaluate.judge`: the VLM judge (the chain's VLM layer, its own versioned prompt);
- :mod:`~ditto_hf.evaluate.report`: aggregates, the Table 1-style table and the JSON;
- :mod:`~ditto_hf.evaluate.evaluator`: :func:`evaluate`, which ties them together.
"""

from ditto_hf.evaluate.evaluator import EvalSettings, evaluate
from ditto_hf.evaluate.judge import JudgeConfig

__all__ = ["EvalSettings", "JudgeConfig", "evaluate"]
