"""Assemble and serve the explorer: :func:`create_app` and :func:`serve`."""

from __future__ import annotations

import panel as pn

from .views import DatasetExplorer, DecayExplorer

__all__ = ["create_app", "serve"]

#: resources (JS, CSS) come from the local server, never from a CDN
pn.config.inline = False


def create_app() -> pn.viewable.Viewable:
    """The two pages (multipole decay, dataset explorer) as tabs of one layout."""
    pn.extension(sizing_mode="stretch_width", notifications=False)
    header = pn.pane.Markdown(
        "# gplode explorer\nLODE features for any exponent p: choose hyper-parameters by watching the "
        "multipole decay (page 1) and the map of a data set (page 2).",
        sizing_mode="stretch_width",
    )
    tabs = pn.Tabs(
        ("Multipole decay", DecayExplorer()),
        ("Dataset explorer", DatasetExplorer()),
        dynamic=True,
        sizing_mode="stretch_width",
    )
    return pn.Column(header, tabs, sizing_mode="stretch_width")


def serve(port: int = 5006, open_browser: bool = True, **kwargs):
    """Serve the app on ``127.0.0.1:port`` until interrupted (``gplode explore``).

    :param port: TCP port; 0 picks a free one
    :param open_browser: open the page in the default web browser
    :param kwargs: passed to :func:`panel.serve` (e.g. ``threaded=True, start=False``)
    """
    kwargs.setdefault("show", open_browser)
    kwargs.setdefault("title", "gplode explorer")
    return pn.serve(
        create_app,
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
        **kwargs,
    )
