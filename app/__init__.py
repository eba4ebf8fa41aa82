"""The gplode explorer (Panel + HoloViews + Bokeh), installed as ``gplode.app``.

``gplode explore`` calls :func:`serve`; ``panel serve`` works on :mod:`gplode.app.serve_app`.
The library never imports this subpackage; it needs the ``app`` extra. The numerics live
in :mod:`gplode.app.model` (no GUI import), the pages in :mod:`gplode.app.views`.
"""

from .main import create_app, serve

__all__ = ["create_app", "serve"]
