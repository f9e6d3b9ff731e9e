"""Register the ``ditto_1m`` builder with ``datasets`` so ``load_dataset("ditto_1m", ...)`` works.

datasets 5 no longer runs loading scripts; ``load_dataset(name)`` only resolves names found in the
private dict ``datasets.packaged_modules._PACKAGED_DATASETS_MODULES`` (name -> (module path, hash)),
through ``datasets.load.PackagedDatasetModuleFactory``. That factory resolves ``data_dir`` as a
*local* directory and globs it for data files, which would scan a local release and cannot reach an
``hf://`` root. So the name is added to the dict, and the factory is extended for this one name:
it lists ``training_metadata/*.json`` under the root and hands ``datasets`` one builder config per
metadata file, the way it builds configs from a Hub card's ``configs:``. Every other name goes to
the original factory unchanged. If a ``datasets`` release moves these internals, importing this
module warns at once (``RegistrationError`` text) instead of failing later inside ``load_dataset``;
``Ditto1M`` can still be used directly.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import datasets
import datasets.load
import datasets.packaged_modules

NAME = "ditto_1m"
MODULE = "ditto_1m"
_REQUIRED = {
    "datasets.packaged_modules._PACKAGED_DATASETS_MODULES": (datasets.packaged_modules, "_PACKAGED_DATASETS_MODULES"),
    "datasets.packaged_modules._hash_python_lines": (datasets.packaged_modules, "_hash_python_lines"),
    "datasets.load.PackagedDatasetModuleFactory": (datasets.load, "PackagedDatasetModuleFactory"),
    "datasets.load.DatasetModule": (datasets.load, "DatasetModule"),
    "datasets.load.BuilderConfigsParameters": (datasets.load, "BuilderConfigsParameters"),
}


class RegistrationError(ImportError):
    """The installed ``datasets`` no longer exposes what the ``ditto_1m`` registration relies on."""


def _check_internals() -> None:
    missing = [name for name, (owner, attribute) in _REQUIRED.items() if not hasattr(owner, attribute)]
    if missing:
        raise RegistrationError(
            f"datasets {datasets.__version__} changed its builder registry ({', '.join(missing)} missing): the name "
            f"'ditto_1m' cannot be registered; use ditto_1m.Ditto1M(config_name=..., data_dir=...) directly"
        )
    factory = datasets.load.PackagedDatasetModuleFactory
    parameters = list(inspect.signature(factory.__init__).parameters)
    if parameters[:2] != ["self", "name"] or "data_dir" not in parameters or "download_config" not in parameters:
        raise RegistrationError(
            f"datasets {datasets.__version__}: PackagedDatasetModuleFactory changed its signature ({parameters}); "
            f"the name 'ditto_1m' cannot be registered"
        )


def module_hash() -> str:
    """Hash of the builder's source (ditto_1m.py and the readers), the way datasets hashes its own modules."""
    import ditto_1m
    from ditto_hf import builders

    lines = inspect.getsource(ditto_1m).splitlines()
    for path in sorted(Path(builders.__file__).parent.glob("*.py")):
        lines += path.read_text(encoding="utf-8").splitlines()
    return datasets.packaged_modules._hash_python_lines(lines)


def builder_configs(data_dir: str | None, download_config=None) -> list:
    """One ``Ditto1MConfig`` per metadata file present under the root, with that file as its data file."""
    from datasets.data_files import DataFilesDict, DataFilesList

    from ditto_1m import Ditto1MConfig, release_storage_options
    from ditto_hf.builders.release import DEFAULT_ROOT, ReleaseRoot

    root = data_dir or DEFAULT_ROOT
    token = getattr(download_config, "token", None)
    storage = getattr(download_config, "storage_options", None)
    release = ReleaseRoot(root, release_storage_options(root, storage, token))
    protocol = root.split("://", 1)[0] + "://" if "://" in root else ""
    return [
        Ditto1MConfig(name=name, data_files=DataFilesDict({"train": DataFilesList([protocol + path], [()])}))
        for name, path in release.metadata_files().items()
    ]


def _make_factory(original: type) -> type:
    class DittoAwarePackagedModuleFactory(original):
        """``PackagedDatasetModuleFactory`` that resolves ``ditto_1m`` from the release root's metadata files."""

        def get_module(self):
            if self.name != NAME:
                return super().get_module()
            from ditto_1m import DEFAULT_CONFIG_NAME

            configs = builder_configs(self.data_dir, self.download_config)
            module_path, module_hash_ = datasets.packaged_modules._PACKAGED_DATASETS_MODULES[NAME]
            default = DEFAULT_CONFIG_NAME if any(config.name == DEFAULT_CONFIG_NAME for config in configs) else None
            return datasets.load.DatasetModule(
                module_path,
                module_hash_,
                {"dataset_name": NAME},
                builder_configs_parameters=datasets.load.BuilderConfigsParameters(builder_configs=configs, default_config_name=default),
            )

    DittoAwarePackagedModuleFactory.original = original
    return DittoAwarePackagedModuleFactory


def register() -> None:
    """Make ``load_dataset("ditto_1m", ...)`` resolve to :class:`ditto_1m.Ditto1M`. Idempotent."""
    _check_internals()
    packaged = datasets.packaged_modules._PACKAGED_DATASETS_MODULES
    if NAME not in packaged:
        packaged[NAME] = (MODULE, module_hash())
    if not getattr(datasets.load.PackagedDatasetModuleFactory, "original", None):
        datasets.load.PackagedDatasetModuleFactory = _make_factory(datasets.load.PackagedDatasetModuleFactory)


def is_registered() -> bool:
    packaged = getattr(datasets.packaged_modules, "_PACKAGED_DATASETS_MODULES", {})
    return NAME in packaged and hasattr(getattr(datasets.load, "PackagedDatasetModuleFactory", None), "original")


try:
    register()
except RegistrationError as error:  # the rest of ditto-hf stays usable; the registration test fails loudly
    warnings.warn(str(error), RuntimeWarning, stacklevel=2)
