"""The owner's routes: review, dashboard pages, metrics, library, this document."""

from __future__ import annotations

from typing import Any

from web.openapi.parts import (
    BOOL,
    COMMON,
    ID_PARAM,
    INT,
    STR,
    body,
    error,
    fragment,
    html_page,
    job_answer,
    obj,
    ref,
    response,
)

_NULL_STR = {"type": ["string", "null"]}

OWNER_PATHS: dict[str, Any] = {
    "/api/notify/test": {
        "post": {
            "summary": "Send a test notification to every notify.urls entry, now",
            "description": "Answers per URL (its secrets masked) whether it was "
            "delivered; recorded in the history as event `test`.",
            "responses": {
                "200": response(
                    "one result per URL",
                    obj(
                        delivered=BOOL,
                        results={
                            "type": "array",
                            "items": obj(target=STR, delivered=BOOL, error=_NULL_STR),
                        },
                    ),
                ),
                "409": error("no notify.urls configured"),
                **COMMON,
            },
        }
    },
    "/api/notify/history": {
        "get": {
            "summary": "The last 100 notifications, newest first",
            "responses": {
                "200": response(
                    "messages",
                    obj(
                        messages={
                            "type": "array",
                            "items": obj(
                                at=STR,
                                event=STR,
                                title=STR,
                                delivered=BOOL,
                                error=_NULL_STR,
                            ),
                        }
                    ),
                ),
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
                "200": response(
                    "groups",
                    obj(
                        groups={
                            "type": "array",
                            "items": obj(
                                file=ref("File"),
                                members={
                                    "type": "array",
                                    "items": obj(file=ref("File"), distance=INT),
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
                "200": response(
                    "the file after the answer", obj(action=STR, file=ref("File"))
                ),
                "404": error("unknown id"),
                "409": error("not flagged, or cannot be moved now"),
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
                "404": error("unknown id, or not an image that can be previewed"),
                "401": COMMON["401"],
            },
        }
    },
    "/dashboard": html_page(
        "overview (health, counts, stage flow, charts, jobs, batches)"
    ),
    "/dashboard/review": html_page("near-duplicate review"),
    "/dashboard/problems": html_page("files in ERROR (retry) and SKIPPED"),
    "/dashboard/files": html_page("search files by name, state and capture date"),
    "/dashboard/fragments/health": fragment("Component state pills"),
    "/dashboard/fragments/notifications": fragment(
        "The last notifications and whether each was delivered"
    ),
    "/dashboard/fragments/status": fragment(
        "Counts by state, stage flow, waiting files"
    ),
    "/dashboard/fragments/activity": fragment("Running jobs and batches on their way"),
    "/dashboard/fragments/charts": fragment(
        "Chart data (intake by outcome, library growth, storage)", "span"
    ),
    "/dashboard/fragments/groups": fragment(
        "Near-duplicate groups with previews and buttons", "after"
    ),
    "/dashboard/fragments/errors": fragment(
        "Files in ERROR with retry buttons", "after"
    ),
    "/dashboard/fragments/skipped": fragment("SKIPPED files and why", "after"),
    "/dashboard/fragments/library": fragment(
        "MISSING and CORRUPT library files", "after"
    ),
    "/dashboard/fragments/files": fragment(
        "File search results", "q", "status", "since", "until", "after"
    ),
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
            "requestBody": body({"path": STR}),
            "responses": {
                "202": response(
                    "the job (the running one if already running)", job_answer()
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
            "requestBody": body({"hash": BOOL}),
            "responses": {
                "202": response(
                    "the job (the running one if already running)", job_answer()
                ),
                **COMMON,
            },
        }
    },
    "/api/library/status": {
        "get": {
            "summary": "Latest adopt and verify jobs, the last verify, adopted roots",
            "responses": {
                "200": response(
                    "status",
                    obj(
                        adopt=ref("Job"),
                        verify=ref("Job"),
                        last_verify=ref("VerifySummary"),
                        roots={
                            "type": "array",
                            "items": obj(
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
