"""Entry point for ``panel serve $(python -c 'import gplode.app.serve_app as m; print(m.__file__)')``."""

from gplode.app.main import create_app

create_app().servable(title="gplode explorer")
