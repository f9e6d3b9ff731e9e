"""Running the chain: recipes (``recipe``), the run directory and its resume markers (``rundir``),
source clips (``inputs``), progress and cost tables (``report``) and the driver that ties them to
an engine (``driver``)."""
