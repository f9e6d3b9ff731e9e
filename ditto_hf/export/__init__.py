"""Hand-off to training frameworks: ``ditto-hf export``.

- :mod:`ditto_hf.export.sources`: what can be exported (a generate run, ``ditto_1m:CONFIG``, a
  datasets source), as a stream of triplets;
- :mod:`ditto_hf.export.diffsynth`: the folder DiffSynth-Studio's VACE training reads.
"""

from ditto_hf.export.diffsynth import ExportReport, ExportSettings, export_diffsynth
from ditto_hf.export.sources import TrainingSource, Triplet, open_training_source

__all__ = ["ExportReport", "ExportSettings", "Triplet", "TrainingSource", "export_diffsynth", "open_training_source"]
