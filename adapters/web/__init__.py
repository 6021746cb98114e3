"""The web playground: a local single-page app and its JSON API, served by ``imagebot serve``.

Routes (all mounted on serve's aiohttp app, see :mod:`adapters.web.routes`):

* ``GET /`` the page, ``GET /static/{name}`` its script, styles and icon.
* ``GET /api/config`` models, ratios, sizes, defaults and the offline flag.
* ``GET|POST /api/threads`` list web threads that have turns, create one (with settings).
* ``GET|PATCH|DELETE /api/threads/{id}`` a thread's turns, rename it (``{"title": ...}``),
  delete it; ``GET|PUT .../settings`` its settings.
* ``POST /api/threads/{id}/turns`` run a turn (multipart: prompt, option fields, ``refs``);
  the page picks a new thread's id, and the thread exists once a turn succeeds.
* ``DELETE /api/turns/{id}`` remove a turn from its thread's history.
* ``GET /api/images/{sha256}`` an image from the blob table; ``.../download`` as attachment.
* ``/usage`` and ``/api/usage...``: usage, policy and audit (:mod:`adapters.web.usage`).

Who may call them is :mod:`adapters.web.access`: a loopback ``Host`` without a token, the
token with one, and a CSRF header on writes.
"""

from adapters.web.access import COOKIE
from adapters.web.routes import WebPlayground
from adapters.web.views import turn_json

__all__ = ["COOKIE", "WebPlayground", "turn_json"]
