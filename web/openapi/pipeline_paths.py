"""The routes of the pipeline itself: health, config, stages, files, batches, jobs."""

from __future__ import annotations

from typing import Any

from web.openapi.parts import (
    BOOL,
    COMMON,
    COUNTS,
    ID_PARAM,
    INT,
    NUM,
    RETRIED,
    STR,
    body,
    error,
    job_answer,
    obj,
    ref,
    response,
)

PIPELINE_PATHS: dict[str, Any] = {
    "/health": {
        "get": {
            "summary": "Version, uptime and component states (never needs auth)",
            "security": [],
            "responses": {
                "200": response(
                    "healthy",
                    obj(
                        version=STR,
                        uptime_seconds=NUM,
                        components=COUNTS,
                        last_verify=ref("VerifySummary"),
                    ),
                ),
                "503": response(
                    "the database is unusable", obj(components={"type": "object"})
                ),
            },
        }
    },
    "/api/config": {
        "get": {
            "summary": "The configuration, secrets masked",
            "responses": {
                "200": response("config", obj(config={"type": "object"})),
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
                "200": response(
                    "new config",
                    obj(
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
            "requestBody": body({}),
            "responses": {
                "202": response(
                    "the job (the running one if already running)", job_answer()
                ),
                **COMMON,
            },
        }
    },
    "/api/dedup/status": {
        "get": {
            "summary": "Latest dedup job and counts",
            "responses": {
                "200": response(
                    "status",
                    obj(
                        job=ref("Job"),
                        counts=obj(
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
            "requestBody": body(
                {"max_size_gb": {"type": "number", "exclusiveMinimum": 0}}
            ),
            "responses": {
                "201": response("batch created", obj(batch=ref("Batch"))),
                "200": response("nothing waits", obj(batch={"type": "null"})),
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
                "200": response(
                    "batches", obj(batches={"type": "array", "items": ref("Batch")})
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
                "200": response("batch", obj(batch=ref("Batch"))),
                "404": error("unknown or non-numeric id"),
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
            "requestBody": body({"batch_id": INT}),
            "responses": {
                "202": response(
                    "the job, and the batches it hands over",
                    obj(
                        job=ref("Job"),
                        batches={"type": "array", "items": ref("Batch")},
                    ),
                ),
                "404": error("unknown batch"),
                "409": error(
                    "Syncthing disabled, the batch is not CREATED, or the Syncthing "
                    "folder is not Send Only"
                ),
                "502": error("Syncthing did not answer the folder-type check"),
                **COMMON,
            },
        }
    },
    "/api/sync/status": {
        "get": {
            "summary": "Batches on their way through Syncthing",
            "responses": {
                "200": response(
                    "status",
                    obj(
                        batches={
                            "type": "array",
                            "items": obj(
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
            "requestBody": body({"batch_id": INT, "dry_run": BOOL}),
            "responses": {
                "202": response("the job", job_answer()),
                "404": error("unknown batch"),
                **COMMON,
            },
        }
    },
    "/api/sort/status": {
        "get": {
            "summary": "Latest sort job and counts",
            "responses": {
                "200": response(
                    "status",
                    obj(
                        job=ref("Job"),
                        counts=obj(sorted=INT, pending=INT, errors=INT),
                    ),
                ),
                **COMMON,
            },
        }
    },
    "/api/cleanup/run": {
        "post": {
            "summary": "Run the cleanup now",
            "requestBody": body({"dry_run": BOOL}),
            "responses": {
                "200": response(
                    "actions taken (or that would be)",
                    obj(
                        dry_run=BOOL,
                        actions={
                            "type": "array",
                            "items": obj(action=STR, path=STR, reason=STR),
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
                "200": response("dashboard", ref("Dashboard")),
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
                "200": response(
                    "a page",
                    obj(files={"type": "array", "items": ref("File")}, next_after=INT),
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
                "200": response("file", obj(file=ref("File"))),
                "404": error("unknown id"),
                **COMMON,
            },
        }
    },
    "/api/jobs/{id}": {
        "get": {
            "summary": "One job (what `trigger` follows until it is DONE or FAILED)",
            "parameters": ID_PARAM,
            "responses": {
                "200": response("job", obj(job=ref("Job"))),
                "404": error("unknown id"),
                **COMMON,
            },
        }
    },
    "/api/files/{id}/retry": {
        "post": {
            "summary": "Retry an ERROR file at the stage it failed in",
            "parameters": ID_PARAM,
            "responses": {
                "202": response(
                    "the file (due now) and the retry job",
                    obj(file=ref("File"), job=ref("Job")),
                ),
                "404": error("unknown id"),
                "409": error("the file is not ERROR"),
                **COMMON,
            },
        }
    },
    "/api/files/retry": {
        "post": {
            "summary": "Retry every (or every listed) ERROR file, and batches in ERROR",
            "requestBody": body(
                {"ids": {"type": "array", "items": INT, "maxItems": 10000}}
            ),
            "responses": {
                "202": response("files asked for and the retry job", RETRIED),
                "200": response("nothing to retry", RETRIED),
                **COMMON,
            },
        }
    },
}
