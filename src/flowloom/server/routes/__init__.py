"""The API's routers, one module per area; `create_app` includes each module's `router`.

To add an area, write ``routes/<area>.py`` with a module-level ``router = APIRouter(...)``
and add its module name to ROUTE_MODULES (and its routes to tests/server/authz_matrix.py).
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter

__all__ = ["API_PREFIX", "ROUTE_MODULES", "routers"]

API_PREFIX = "/api/v1"

ROUTE_MODULES: tuple[str, ...] = (
    "flowloom.server.routes.health",
    "flowloom.server.routes.session",
    "flowloom.server.routes.me",
    "flowloom.server.routes.projects",
    "flowloom.server.routes.people",
    "flowloom.server.routes.keys",
    "flowloom.server.routes.ledger",
    "flowloom.server.routes.ledger_key",
    # other areas: add one line each below
    "flowloom.server.routes.oidc",
    "flowloom.server.routes.saml",
    "flowloom.server.routes.signatures",
    "flowloom.server.routes.decisions",
    "flowloom.server.routes.reports",
    "flowloom.server.routes.reviews",
    "flowloom.server.routes.scim",
    "flowloom.server.routes.tlog",
    "flowloom.server.routes.integrations",
    "flowloom.server.routes.webhooks",
    "flowloom.server.routes.notifications",
    "flowloom.server.routes.siem",
    "flowloom.server.routes.scans",
    "flowloom.server.web.routes",
)


def routers() -> list[APIRouter]:
    """Each module's `router`, in ROUTE_MODULES order."""
    found: list[APIRouter] = []
    for name in ROUTE_MODULES:
        router = importlib.import_module(name).router
        assert isinstance(router, APIRouter), f"{name}.router is not an APIRouter"
        found.append(router)
    return found
