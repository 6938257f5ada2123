"""The interactive API docs (Swagger UI and Redoc), served whole by the service: the pages
spectree renders load their assets from here (the `offapi` package ships them), so they work
offline, under the pages' Content-Security-Policy (no inline script), and ask no other host
for anything (Redoc's logo is served from here too)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Blueprint, Response, abort

ASSETS_URL = "/apidoc/assets/"
# offapi's files, by the name they are served under, and their content type.
ASSETS = {
    "swagger_style.css": "text/css",
    "swagger_bundle.js": "text/javascript",
    "swagger_preset.js": "text/javascript",
    "redoc.js": "text/javascript",
}
# Redoc's sidebar shows its maker's logo from a CDN: the same words, drawn here.
REDOC_LOGO = "redoc-logo.svg"
REDOC_LOGO_URLS = (
    b"https://cdn.redoc.ly/redoc/logo-mini-full.svg",
    b"https://cdn.redoc.ly/redoc/logo-mini.svg",
)
REDOC_LOGO_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="72" height="16" viewBox="0 0 72 16">'
    b'<text x="0" y="12" font-family="sans-serif" font-size="12" font-weight="600" '
    b'fill="#52606d">Redocly</text></svg>'
)

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
}

bp = Blueprint("apidoc_assets", __name__)


@bp.get(ASSETS_URL + "<name>")
def apidoc_asset(name: str) -> Response:
    """One of the docs' script or style files, from the installed offapi package."""
    if name == REDOC_LOGO:
        response = Response(REDOC_LOGO_SVG, mimetype="image/svg+xml")
    elif name in ASSETS:
        response = Response(_asset(name), mimetype=ASSETS[name])
    else:
        abort(404)
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


@cache
def _asset(name: str) -> bytes:
    body = (resources.files("offapi") / name).read_bytes()
    if name == "redoc.js":
        for url in REDOC_LOGO_URLS:
            body = body.replace(url, (ASSETS_URL + REDOC_LOGO).encode())
    return body
