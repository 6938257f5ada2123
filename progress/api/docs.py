"""The interactive API docs (Swagger UI, Redoc, Scalar), served whole by the service: the
pages spectree renders load their assets from here (the `offapi` package ships them), so
they work offline and under the pages' Content-Security-Policy (no inline script)."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort

ASSETS_URL = "/apidoc/assets/"
# offapi's files, by the name they are served under, and their content type.
ASSETS = {
    "swagger_style.css": "text/css",
    "swagger_bundle.js": "text/javascript",
    "swagger_preset.js": "text/javascript",
    "redoc.js": "text/javascript",
    "scalar.js": "text/javascript",
}

_HEAD = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Lesson progress service · {title}</title>
    {head}
  </head>
  <body>
    {body}
  </body>
</html>
"""


def _page(title: str, head: str, body: str) -> str:
    # spectree fills {spec_url} with str.format: every other brace is doubled.
    return _HEAD.format(title=title, head=head, body=body)


PAGE_TEMPLATES = {
    "swagger": _page(
        "Swagger UI",
        f'<link rel="stylesheet" href="{ASSETS_URL}swagger_style.css">',
        '<div id="swagger-ui" data-spec-url="{spec_url}"></div>\n'
        f'    <script src="{ASSETS_URL}swagger_bundle.js"></script>\n'
        f'    <script src="{ASSETS_URL}swagger_preset.js"></script>\n'
        '    <script src="/static/apidoc-swagger.js"></script>',
    ),
    "redoc": _page(
        "Redoc",
        "",
        '<redoc spec-url="{spec_url}"></redoc>\n'
        f'    <script type="module" src="{ASSETS_URL}redoc.js"></script>',
    ),
    "scalar": _page(
        "API reference",
        "",
        # Configured by attributes (no inline script); its web fonts would come from a CDN.
        '<script id="api-reference" data-url="{spec_url}"\n'
        """      data-configuration='{{"withDefaultFonts": false}}'></script>\n"""
        f'    <script src="{ASSETS_URL}scalar.js"></script>',
    ),
}

bp = Blueprint("apidoc_assets", __name__)


@bp.get(ASSETS_URL + "<name>")
def apidoc_asset(name: str) -> Response:
    """One of the docs' script or style files, from the installed offapi package."""
    if name not in ASSETS:
        abort(404)
    body = (resources.files("offapi") / name).read_bytes()
    response = Response(body, mimetype=ASSETS[name])
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response
