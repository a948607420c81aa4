"""The Starlette app: API routes, auth, OpenAPI document and dashboard."""
