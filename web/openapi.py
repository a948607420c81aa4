"""The OpenAPI 3 document of every route (served at /openapi.json, copied to docs/)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import __version__
from web.schemas import component_schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"const": "ok"}, "data": data},
    }


def _response(text: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ok(data)}}}


def _error(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _body(props: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": False, "properties": props}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _job_answer() -> dict[str, Any]:
    return _obj(job=_ref("Job"))


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
COMMON = {"400": _error("invalid request"), "401": _error("missing or wrong API key")}
ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": INT}]

# Generated from the response models in web/schemas.py (one source for the shapes).
SCHEMAS: dict[str, Any] = component_schemas()

COUNTS = {"type": "object", "additionalProperties": INT}
_RETRIED = _obj(retried=INT, batches={"type": "array", "items": INT}, job=_ref("Job"))

PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "summary": "Version, uptime and component states (never needs auth)",
            "security": [],
            "responses": {
                "200": _response(
                    "healthy",
                    _obj(
                        version=STR,
                        uptime_seconds=NUM,
                        components=COUNTS,
                        last_verify=_ref("VerifySummary"),
                    ),
                ),
                "503": _response(
                    "the database is unusable", _obj(components={"type": "object"})
                ),
            },
        }
    },
    "/api/config": {
        "get": {
            "summary": "The configuration, secrets masked",
            "responses": {
                "200": _response("config", _obj(config={"type": "object"})),
                **COMMON,
            },
        },
        "put": {
            "summary": "Deep-merge a JSON patch, validate, save atomically, audit",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": _response(
                    "new config",
                    _obj(
                        config={"type": "object"},
                        restart_required={"type": "array", "items": STR},
                    ),
                ),
                **COMMON,
            },
        },
    },
    "/api/dedup/start": {
        "post": {
            "summary": "Start a job: scan the inbox for unknown files, hash and de-duplicate",
            "requestBody": _body({}),
            "responses": {
                "202": _response(
                    "the job (the running one if already running)", _job_answer()
                ),
                **COMMON,
            },
        }
    },
    "/api/dedup/status": {
        "get": {
            "summary": "Latest dedup job and counts",
            "responses": {
                "200": _response(
                    "status",
                    _obj(
                        job=_ref("Job"),
                        counts=_obj(
                            seen=INT,
                            hashed=INT,
                            unique=INT,
                            duplicates=INT,
                            near_duplicates=INT,
                            errors=INT,
                        ),
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/batch/create": {
        "post": {
            "summary": "Make one batch now",
            "requestBody": _body(
                {"max_size_gb": {"type": "number", "exclusiveMinimum": 0}}
            ),
            "responses": {
                "201": _response("batch created", _obj(batch=_ref("Batch"))),
                "200": _response("nothing waits", _obj(batch={"type": "null"})),
                **COMMON,
            },
        }
    },
    "/api/batches": {
        "get": {
            "summary": "Batches, newest first",
            "parameters": [
                {"name": "status", "in": "query", "schema": STR},
                {"name": "limit", "in": "query", "schema": INT},
            ],
            "responses": {
                "200": _response(
                    "batches", _obj(batches={"type": "array", "items": _ref("Batch")})
                ),
                **COMMON,
            },
        }
    },
    "/api/batches/{id}": {
        "get": {
            "summary": "One batch with its manifest",
            "parameters": ID_PARAM,
            "responses": {
                "200": _response("batch", _obj(batch=_ref("Batch"))),
                "404": _error("unknown or non-numeric id"),
                **COMMON,
            },
        }
    },
    "/api/sync/start": {
        "post": {
            "summary": "Start the sync job: hand CREATED batches (or one) to Syncthing",
            "description": (
                "Answers at once: moving the batches into the Syncthing folder and "
                "Syncthing's rescan run in the `sync` job (while one runs, its job is "
                "the answer). `batches` are those the job hands over, as they are "
                "now (CREATED). The preconditions are checked before answering, with "
                "at most one quick call to Syncthing (the folder type)."
            ),
            "requestBody": _body({"batch_id": INT}),
            "responses": {
                "202": _response(
                    "the job, and the batches it hands over",
                    _obj(
                        job=_ref("Job"),
                        batches={"type": "array", "items": _ref("Batch")},
                    ),
                ),
                "404": _error("unknown batch"),
                "409": _error(
                    "Syncthing disabled, the batch is not CREATED, or the Syncthing "
                    "folder is not Send Only"
                ),
                "502": _error("Syncthing did not answer the folder-type check"),
                **COMMON,
            },
        }
    },
    "/api/sync/status": {
        "get": {
            "summary": "Batches on their way through Syncthing",
            "responses": {
                "200": _response(
                    "status",
                    _obj(
                        batches={
                            "type": "array",
                            "items": _obj(
                                id=INT,
                                name=STR,
                                status=STR,
                                progress=NUM,
                                bytes_total=INT,
                                bytes_needed=INT,
                                last_error=STR,
                            ),
                        }
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/sort/start": {
        "post": {
            "summary": "Start a sort job for ready batches (or one)",
            "requestBody": _body({"batch_id": INT, "dry_run": BOOL}),
            "responses": {
                "202": _response("the job", _job_answer()),
                "404": _error("unknown batch"),
                **COMMON,
            },
        }
    },
    "/api/sort/status": {
        "get": {
            "summary": "Latest sort job and counts",
            "responses": {
                "200": _response(
                    "status",
                    _obj(
                        job=_ref("Job"),
                        counts=_obj(sorted=INT, pending=INT, errors=INT),
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/cleanup/run": {
        "post": {
            "summary": "Run the cleanup now",
            "requestBody": _body({"dry_run": BOOL}),
            "responses": {
                "200": _response(
                    "actions taken (or that would be)",
                    _obj(
                        dry_run=BOOL,
                        actions={
                            "type": "array",
                            "items": _obj(action=STR, path=STR, reason=STR),
                        },
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/dashboard": {
        "get": {
            "summary": "Counts, storage, recent errors and files per hour",
            "responses": {
                "200": _response("dashboard", _ref("Dashboard")),
                **COMMON,
            },
        }
    },
    "/api/files": {
        "get": {
            "summary": "Files, paginated by id",
            "parameters": [
                {"name": "status", "in": "query", "schema": STR},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "after", "in": "query", "schema": INT},
            ],
            "responses": {
                "200": _response(
                    "a page",
                    _obj(
                        files={"type": "array", "items": _ref("File")}, next_after=INT
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/files/{id}": {
        "get": {
            "summary": "One file",
            "parameters": ID_PARAM,
            "responses": {
                "200": _response("file", _obj(file=_ref("File"))),
                "404": _error("unknown id"),
                **COMMON,
            },
        }
    },
    "/api/jobs/{id}": {
        "get": {
            "summary": "One job (what `trigger` follows until it is DONE or FAILED)",
            "parameters": ID_PARAM,
            "responses": {
                "200": _response("job", _obj(job=_ref("Job"))),
                "404": _error("unknown id"),
                **COMMON,
            },
        }
    },
    "/api/files/{id}/retry": {
        "post": {
            "summary": "Retry an ERROR file at the stage it failed in",
            "parameters": ID_PARAM,
            "responses": {
                "202": _response(
                    "the file (due now) and the retry job",
                    _obj(file=_ref("File"), job=_ref("Job")),
                ),
                "404": _error("unknown id"),
                "409": _error("the file is not ERROR"),
                **COMMON,
            },
        }
    },
    "/api/files/retry": {
        "post": {
            "summary": "Retry every (or every listed) ERROR file, and batches in ERROR",
            "requestBody": _body(
                {"ids": {"type": "array", "items": INT, "maxItems": 10000}}
            ),
            "responses": {
                "202": _response("files asked for and the retry job", _RETRIED),
                "200": _response("nothing to retry", _RETRIED),
                **COMMON,
            },
        }
    },
    "/api/duplicates": {
        "get": {
            "summary": "Near-duplicate groups for review, each file in exactly one group",
            "description": "Served from the partial index on files.near_duplicate_of; "
            "groups are ordered by the id of the file the others resemble.",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {**INT, "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "after",
                    "in": "query",
                    "schema": {**INT, "minimum": 0},
                    "description": "next_after of the previous page",
                },
            ],
            "responses": {
                "200": _response(
                    "groups",
                    _obj(
                        groups={
                            "type": "array",
                            "items": _obj(
                                file=_ref("File"),
                                members={
                                    "type": "array",
                                    "items": _obj(file=_ref("File"), distance=INT),
                                },
                            ),
                        },
                        next_after={"type": ["integer", "null"]},
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/duplicates/{id}/resolve": {
        "post": {
            "summary": "Answer for a flagged near-duplicate: keep both, or set it aside",
            "description": "keep: the flag is cleared and never raised again for this pair. "
            "duplicate: the file is moved (journaled) from wherever it is now to "
            "duplicates_dir and becomes DUPLICATE, duplicate_of the group's file.",
            "parameters": ID_PARAM,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["action"],
                            "properties": {"action": {"enum": ["keep", "duplicate"]}},
                        }
                    }
                },
            },
            "responses": {
                "200": _response(
                    "the file after the answer", _obj(action=STR, file=_ref("File"))
                ),
                "404": _error("unknown id"),
                "409": _error("not flagged, or cannot be moved now"),
                **COMMON,
            },
        }
    },
    "/api/files/{id}/thumbnail": {
        "get": {
            "summary": "A JPEG preview (longest side at most 320 px, EXIF orientation applied), cached in temp_dir",
            "parameters": ID_PARAM,
            "responses": {
                "200": {"description": "JPEG", "content": {"image/jpeg": {}}},
                "404": _error("unknown id, or not an image that can be previewed"),
                "401": COMMON["401"],
            },
        }
    },
    "/dashboard": {
        "get": {
            "summary": "Dashboard: overview (health, counts, stage flow, charts, jobs, batches)",
            "description": "An HTML page without data (loads without a key); its parts come from /dashboard/fragments/.",
            "security": [],
            "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {}}}
            },
        }
    },
    "/dashboard/review": {
        "get": {
            "summary": "Dashboard: near-duplicate review",
            "description": "An HTML page without data (loads without a key); its parts come from /dashboard/fragments/.",
            "security": [],
            "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {}}}
            },
        }
    },
    "/dashboard/problems": {
        "get": {
            "summary": "Dashboard: files in ERROR (retry) and SKIPPED",
            "description": "An HTML page without data (loads without a key); its parts come from /dashboard/fragments/.",
            "security": [],
            "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {}}}
            },
        }
    },
    "/dashboard/files": {
        "get": {
            "summary": "Dashboard: search files by name, state and capture date",
            "description": "An HTML page without data (loads without a key); its parts come from /dashboard/fragments/.",
            "security": [],
            "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {}}}
            },
        }
    },
    "/dashboard/fragments/health": {
        "get": {
            "summary": "HTML fragment: Component state pills",
            "parameters": [],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/status": {
        "get": {
            "summary": "HTML fragment: Counts by state, stage flow, waiting files",
            "parameters": [],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/activity": {
        "get": {
            "summary": "HTML fragment: Running jobs and batches on their way",
            "parameters": [],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/charts": {
        "get": {
            "summary": "HTML fragment: Chart data (intake by outcome, library growth, storage)",
            "parameters": [{"name": "span", "in": "query", "schema": STR}],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/groups": {
        "get": {
            "summary": "HTML fragment: Near-duplicate groups with previews and buttons",
            "parameters": [{"name": "after", "in": "query", "schema": STR}],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/errors": {
        "get": {
            "summary": "HTML fragment: Files in ERROR with retry buttons",
            "parameters": [{"name": "after", "in": "query", "schema": STR}],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/skipped": {
        "get": {
            "summary": "HTML fragment: SKIPPED files and why",
            "parameters": [{"name": "after", "in": "query", "schema": STR}],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/library": {
        "get": {
            "summary": "HTML fragment: MISSING and CORRUPT library files",
            "parameters": [{"name": "after", "in": "query", "schema": STR}],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/dashboard/fragments/files": {
        "get": {
            "summary": "HTML fragment: File search results",
            "parameters": [
                {"name": "q", "in": "query", "schema": STR},
                {"name": "status", "in": "query", "schema": STR},
                {"name": "since", "in": "query", "schema": STR},
                {"name": "until", "in": "query", "schema": STR},
                {"name": "after", "in": "query", "schema": STR},
            ],
            "responses": {
                **{"200": {"description": "HTML page", "content": {"text/html": {}}}},
                **COMMON,
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {"description": "text format", "content": {"text/plain": {}}},
                "401": COMMON["401"],
            },
        }
    },
    "/api/library/adopt": {
        "post": {
            "summary": "Start a job recording a folder in place (default sorted_dir)",
            "description": "Every regular file is hashed and recorded as SORTED "
            "(source adopted; identical copies DUPLICATE, left in place); nothing is "
            "moved or written. A folder outside every configured one becomes a "
            "read-only reference root; one inside another configured folder, a "
            "system folder or a path through a symlink is refused (400).",
            "requestBody": _body({"path": STR}),
            "responses": {
                "202": _response(
                    "the job (the running one if already running)", _job_answer()
                ),
                **COMMON,
            },
        }
    },
    "/api/library/verify": {
        "post": {
            "summary": "Start a job checking every SORTED/adopted file",
            "description": "Size and mtime, or with hash the SHA-256. The job's "
            "result lists MISSING and CORRUPT files with their last-known hash, "
            "batch, manifest and (Syncthing enabled) whether a remote holds them.",
            "requestBody": _body({"hash": BOOL}),
            "responses": {
                "202": _response(
                    "the job (the running one if already running)", _job_answer()
                ),
                **COMMON,
            },
        }
    },
    "/api/library/status": {
        "get": {
            "summary": "Latest adopt and verify jobs, the last verify, adopted roots",
            "responses": {
                "200": _response(
                    "status",
                    _obj(
                        adopt=_ref("Job"),
                        verify=_ref("Job"),
                        last_verify=_ref("VerifySummary"),
                        roots={
                            "type": "array",
                            "items": _obj(
                                path=STR,
                                kind={"enum": ["library", "reference"]},
                                state={"enum": ["ADOPTING", "ADOPTED"]},
                                files=INT,
                                duplicates=INT,
                                adopted_at=STR,
                            ),
                        },
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3", "content": {"application/json": {}}}
            },
        }
    },
}


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


if __name__ == "__main__":
    import json
    import sys

    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
