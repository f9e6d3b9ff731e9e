"""Make ``load_dataset("ditto_1m", ...)`` resolve to :class:`ditto_1m.Ditto1M`.

datasets 5 no longer runs loading scripts; ``load_dataset(name)`` only resolves names found in the
private dict ``datasets.packaged_modules._PACKAGED_DATASETS_MODULES`` (name -> (module path, hash)),
through ``datasets.load.PackagedDatasetModuleFactory``. That factory globs ``data_dir`` as a
*local* folder, which would scan a whole local release and cannot reach an ``hf://`` root. So
:func:`register` adds the one name ``ditto_1m`` to the dict, and gives the factory one extra
branch for that name only: it lists ``training_metadata/*.json`` under the root and hands
``datasets`` one builder config per metadata file, the way it builds configs from a Hub card's
``configs:``. Every other name goes to datasets' own code, untouched.

:func:`register` is explicit and idempotent. ``import ditto_hf`` does not import ``datasets``; it
arranges for :func:`register` to run when ``datasets`` itself is imported (or at once if it already
is), so ``import ditto_hf; load_dataset("ditto_1m", ...)`` works while ``import ditto_hf.video``
(and every Ray worker) stays free of ``datasets``. If a ``datasets`` release moves these internals,
:func:`register` raises :class:`RegistrationError`; ``Ditto1M`` can still be used directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import sys
import warnings
from pathlib import Path

NAME = "ditto_1m"
MODULE = "ditto_1m"
#: Placeholder in datasets' registry; the real hash of the builder's source is computed when a
#: ``ditto_1m`` module is resolved (hashing the sources at import time would slow every import).
_REGISTRY_HASH = "ditto-hf"
_REQUIRED = (
    ("datasets.packaged_modules", "_PACKAGED_DATASETS_MODULES"),
    ("datasets.packaged_modules", "_hash_python_lines"),
    ("datasets.load", "PackagedDatasetModuleFactory"),
    ("datasets.load", "DatasetModule"),
    ("datasets.load", "BuilderConfigsParameters"),
)


class RegistrationError(ImportError):
    """The installed ``datasets`` no longer exposes what the ``ditto_1m`` registration relies on."""


def _check_internals() -> None:
    import datasets

    missing = [f"{module}.{attribute}" for module, attribute in _REQUIRED if not hasattr(sys.modules[module], attribute)]
    if missing:
        raise RegistrationError(
            f"datasets {datasets.__version__} changed its builder registry ({', '.join(missing)} missing): the name "
            f"'ditto_1m' cannot be registered; use ditto_1m.Ditto1M(config_name=..., data_dir=...) directly"
        )
    factory = sys.modules["datasets.load"].PackagedDatasetModuleFactory
    parameters = list(inspect.signature(factory.__init__).parameters)
    if parameters[:2] != ["self", "name"] or "data_dir" not in parameters or "download_config" not in parameters:
        raise RegistrationError(
            f"datasets {datasets.__version__}: PackagedDatasetModuleFactory changed its signature ({parameters}); "
            f"the name 'ditto_1m' cannot be registered"
        )


def module_hash() -> str:
    """Hash of the builder's source (ditto_1m.py and the readers), the way datasets hashes its own modules."""
    import datasets.packaged_modules

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


def ditto_module(data_dir: str | None, download_config=None):
    """The ``DatasetModule`` datasets builds ``ditto_1m`` from: the builder and one config per metadata file."""
    import datasets.load

    from ditto_1m import DEFAULT_CONFIG_NAME

    configs = builder_configs(data_dir, download_config)
    default = DEFAULT_CONFIG_NAME if any(config.name == DEFAULT_CONFIG_NAME for config in configs) else None
    return datasets.load.DatasetModule(
        MODULE,
        module_hash(),
        {"dataset_name": NAME},
        builder_configs_parameters=datasets.load.BuilderConfigsParameters(builder_configs=configs, default_config_name=default),
    )


def _with_ditto_branch(original: type) -> type:
    class PackagedDatasetModuleFactory(original):
        """datasets' factory, with one branch for ``ditto_1m``; every other name runs datasets' own code."""

        def get_module(self):
            if self.name == NAME:
                return ditto_module(self.data_dir, self.download_config)
            return super().get_module()

    PackagedDatasetModuleFactory.__qualname__ = original.__qualname__
    PackagedDatasetModuleFactory.__module__ = original.__module__
    PackagedDatasetModuleFactory.__doc__ = original.__doc__
    PackagedDatasetModuleFactory.ditto_hf_original = original
    return PackagedDatasetModuleFactory


def register() -> None:
    """Make ``load_dataset("ditto_1m", ...)`` resolve to :class:`ditto_1m.Ditto1M`. Idempotent.

    Adds the name ``ditto_1m`` to datasets' builder registry and the ``ditto_1m`` branch to its
    packaged-module factory; nothing else of ``datasets`` changes.
    """
    import datasets.load
    import datasets.packaged_modules

    _check_internals()
    datasets.packaged_modules._PACKAGED_DATASETS_MODULES.setdefault(NAME, (MODULE, _REGISTRY_HASH))
    if not hasattr(datasets.load.PackagedDatasetModuleFactory, "ditto_hf_original"):
        datasets.load.PackagedDatasetModuleFactory = _with_ditto_branch(datasets.load.PackagedDatasetModuleFactory)


def is_registered() -> bool:
    """True when ``load_dataset("ditto_1m")`` resolves (``datasets`` imported and :func:`register` run)."""
    packaged, load = sys.modules.get("datasets.packaged_modules"), sys.modules.get("datasets.load")
    return (
        packaged is not None
        and NAME in getattr(packaged, "_PACKAGED_DATASETS_MODULES", {})
        and hasattr(getattr(load, "PackagedDatasetModuleFactory", None), "ditto_hf_original")
    )


def unregistered_hint(name: str) -> str:
    """What to add to a "Couldn't reach 'ditto_1m' on the Hub" error when the name is not registered."""
    if name != NAME or is_registered():
        return ""
    return f"; {NAME!r} is not registered in this process: import ditto_hf first (or use ditto_1m.Ditto1M directly)"


def _register_or_warn() -> None:
    try:
        register()
    except RegistrationError as error:  # the rest of ditto-hf stays usable; the registration test fails loudly
        warnings.warn(str(error), RuntimeWarning, stacklevel=3)


class _AfterDatasetsImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs :func:`register` once the ``datasets`` package has finished importing, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "datasets":
            return None
        sys.meta_path.remove(self)  # find the real package with the finders that follow
        spec = importlib.util.find_spec("datasets")
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # the package keeps its own loader
        self._loader.exec_module(module)
        _register_or_warn()


def register_when_datasets_is_imported() -> None:
    """Register now if ``datasets`` is already imported, else as soon as it is (used by ``import ditto_hf``)."""
    if "datasets" in sys.modules:
        _register_or_warn()
    elif not any(isinstance(finder, _AfterDatasetsImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterDatasetsImport())
