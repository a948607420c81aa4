"""The OpenAPI 3 document of every route (served at /openapi.json, copied to docs/).

`python -m web.openapi > docs/openapi.json` writes it. The paths are listed in
`pipeline_paths` and `owner_paths`; the component schemas are generated from the
response models in web/schemas.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import __version__
from web.openapi.owner_paths import OWNER_PATHS
from web.openapi.pipeline_paths import PIPELINE_PATHS
from web.schemas import component_schemas

# Generated from the response models in web/schemas.py (one source for the shapes).
SCHEMAS: dict[str, Any] = component_schemas()
PATHS: dict[str, Any] = {**PIPELINE_PATHS, **OWNER_PATHS}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Media Pipeline", "version": __version__},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": PATHS,
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(document())


routes = [Route("/openapi.json", openapi, methods=["GET"])]
