"""The gplode explorer (Panel + HoloViews), installed as ``gplode.app``.

The browser app is not part of this version yet. The library never imports this
subpackage; it needs the ``app`` extra.
"""
