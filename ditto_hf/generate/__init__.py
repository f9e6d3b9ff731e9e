"""The Ditto generation chain.

- ``contract/``: the stage contract (stage, sample, model registry);
- ``stages/``: one file per stage of the paper's chain;
- ``helpers/``: model and data helpers several stages share;
- ``engines/``: local and Ray engines, which know nothing about what a stage does;
- ``run/``: recipes, run directories, inputs, reports and the driver.
"""
