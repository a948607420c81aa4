"""Building blocks of the OpenAPI document: answers, errors, bodies, pages."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def ok_body(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"const": "ok"}, "data": data},
    }


def response(text: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": ok_body(data)}},
    }


def error(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {"application/json": {"schema": ref("Error")}},
    }


def body(props: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": False, "properties": props}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def job_answer() -> dict[str, Any]:
    return obj(job=ref("Job"))


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
COMMON = {"400": error("invalid request"), "401": error("missing or wrong API key")}
ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": INT}]

HTML = {"description": "HTML page", "content": {"text/html": {}}}
PAGE_NOTE = (
    "An HTML page without data (loads without a key); its parts come from "
    "/dashboard/fragments/."
)


def html_page(summary: str) -> dict[str, Any]:
    """A dashboard page: no data in it, so it loads without a key."""
    return {
        "get": {
            "summary": f"Dashboard: {summary}",
            "description": PAGE_NOTE,
            "security": [],
            "responses": {"200": HTML},
        }
    }


def fragment(summary: str, *query: str) -> dict[str, Any]:
    """A fragment htmx swaps into a page (string query parameters `query`)."""
    return {
        "get": {
            "summary": f"HTML fragment: {summary}",
            "parameters": [{"name": q, "in": "query", "schema": STR} for q in query],
            "responses": {"200": HTML, **COMMON},
        }
    }


COUNTS = {"type": "object", "additionalProperties": INT}
RETRIED = obj(retried=INT, batches={"type": "array", "items": INT}, job=ref("Job"))
