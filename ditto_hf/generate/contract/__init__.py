"""The stage contract: what every stage and every engine agree on.

``stage`` (:class:`Stage`, :class:`StageConfig`, :class:`Resources`, :class:`StageContext`),
``sample`` (:class:`Sample`, the record that flows between stages) and ``models``
(:class:`ModelSpec`, :class:`ModelRegistry`, how stages load their weights). Nothing here knows
about a particular stage, an engine or a run directory.
"""
