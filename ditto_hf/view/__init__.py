"""``ditto-hf view``: a local triplet browser.

``sources`` opens what can be viewed as a paged :class:`~ditto_hf.view.rows.Catalog`, ``rows``
reads rows on demand, ``media`` serves stored bytes by range and checks them, ``server`` is the
HTTP server and ``static/`` the page.
"""

from ditto_hf.view.server import ViewServer
from ditto_hf.view.sources import open_source

__all__ = ["ViewServer", "open_source"]
