"""Test-session set-up: nothing can reach the real Hub, and no model or dataset is downloaded.

``HF_ENDPOINT`` is read by huggingface_hub and datasets at import time, so it is pointed at a
loopback port here, before any test module imports them; the loopback Hub server (``hub_server``
fixture) listens on that port when a test asks for it. Caches live in a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from ditto_hf.testing.hub_server import client_environment, free_port

HUB_PORT = free_port()
_CACHE = Path(tempfile.mkdtemp(prefix="ditto-hf-tests-"))
os.environ.update(client_environment(_CACHE, f"http://127.0.0.1:{HUB_PORT}", offline=True))
os.environ.update(
    {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # Tiny models are fastest single-threaded, and pytest-xdist already runs a worker per core.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
)


@pytest.fixture(scope="session")
def sample_clips() -> list[Path]:
    """The bundled sample clips (orbit, portrait, static, zoom)."""
    from ditto_hf.samples import sample_clips as clips

    found = clips()
    assert len(found) >= 4, "the bundled sample clips are missing: run python -m ditto_hf.samples.render"
    return found


# --- loopback Hub -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _loopback_hub():
    """One loopback Hub server per session, listening where ``HF_ENDPOINT`` points."""
    from ditto_hf.testing.hub_server import HubServer

    server = HubServer(_CACHE / "hub-idle", port=HUB_PORT).start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(_loopback_hub, tmp_path, monkeypatch):
    """The loopback Hub with fresh, empty storage and counters, and offline mode switched off.

    Yields the server: ``.endpoint``, ``.root`` (storage folder), ``.token``, ``.bytes_served``,
    ``.requests``, ``.corrupt(repo_id, path)``, ``.fail_next(route, times, status)``.
    """
    import datasets.config
    import huggingface_hub.constants
    from huggingface_hub import HfFileSystem

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    HfFileSystem.clear_instance_cache()  # its listings cache would outlive the storage swap
    _loopback_hub.root = tmp_path / "hub"
    _loopback_hub.reset_counters()
    yield _loopback_hub
    HfFileSystem.clear_instance_cache()
