"""The MCP server: FlowLoom's tools and decision resources on the official `mcp` SDK.

Fourteen tools, the names assistants call:

- FlowLoom's own: ``search_memory``, ``why``, ``get_decision``, ``recent_activity`` read,
  ``record_decision`` writes;
- the MCP reference memory server's nine (``@modelcontextprotocol/server-memory``),
  with its names, argument schemas and result shapes, so it can be swapped for this
  one: ``create_entities``, ``create_relations``, ``add_observations``,
  ``delete_entities``, ``delete_observations``, ``delete_relations`` write, and
  ``read_graph``, ``search_nodes``, ``open_nodes`` read.

Each write is a ledger event. An argument the tool does not take is refused by name,
and a schema error is one readable line per field, not the validator's dump.

Resources: ``flowloom://decisions`` (every decision, as JSON) and
``flowloom://decisions/{decision_id}`` (one decision); each decision is also listed by
``resources/list`` under its own URI. ``memory://knowledge-graph`` is the reference
memory server's resource (the whole graph).

Each tool validates its arguments against its input schema (sizes included), runs its
`ProjectTools` method on the `Worker` thread, and reports a FlowLoom error as a tool
error result (``isError``) with the one-line message and hint, never as a crash.

Who is calling: over stdio, the assistant working for the local user (the process's
own user, the same trust as the command line); over HTTP, the principal of the API key
that `flowloom.mcp.http.ApiKeyGate` checked for the request, whose permission
``ledger.append`` a writing tool checks through the `Authorizer`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Resource as MCPResource
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowloom import __version__
from flowloom.auth.principals import Principal
from flowloom.errors import FlowLoomError, InputError, NotFoundError, PermissionDeniedError
from flowloom.mcp.handshake import INSTRUCTIONS
from flowloom.mcp.listing import decision_resource
from flowloom.mcp.tools import DECISIONS_URI, Caller, ProjectTools
from flowloom.mcp.worker import Worker

if TYPE_CHECKING:
    from flowloom.auth.permissions import Authorizer

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "TOOL_NAMES",
    "Backend",
    "FlowLoomMCP",
    "build_server",
]

PRINCIPAL_SCOPE_KEY: Final = "flowloom.principal"
"""Where `ApiKeyGate` leaves the request's Principal in the ASGI scope."""

REFERENCE_TOOLS: Final = (
    "create_entities",
    "create_relations",
    "add_observations",
    "delete_entities",
    "delete_observations",
    "delete_relations",
    "read_graph",
    "search_nodes",
    "open_nodes",
)
"""The tools of the MCP reference memory server, which these mirror."""

GRAPH_URI: Final = "memory://knowledge-graph"
"""The reference memory server's resource: the whole graph, as ``read_graph`` gives it."""

TOOL_NAMES: Final = (
    "search_memory",
    "why",
    "get_decision",
    "record_decision",
    "recent_activity",
    *REFERENCE_TOOLS,
)

MAX_NAME: Final = 200
MAX_TITLE: Final = 200
MAX_TEXT: Final = 10_000
MAX_QUERY: Final = 1_000
MAX_ITEMS: Final = 100
MAX_FILES: Final = 500

T = TypeVar("T")


@dataclass
class Backend:
    """What the worker thread holds: the tools, and for HTTP the key check and permissions."""

    tools: ProjectTools
    project: str
    authenticate: Callable[[str], Principal] | None = None
    authorizer: Authorizer | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    refresh: Callable[[], None] | None = None
    """Run before each call: brings the team record's copy up to date (server mode)."""

    def call(self, fn: Callable[[Backend], T]) -> T:
        """`fn` over this backend, on a record brought up to date first."""
        if self.refresh is not None:
            self.refresh()
        return fn(self)

    def close(self) -> None:
        """Close the tools, then whatever else was opened (last opened, first closed)."""
        try:
            self.tools.close()
        finally:
            for closer in reversed(self.closers):
                closer()


# -- argument shapes -------------------------------------------------------------------------

Text = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
ShortText = Annotated[str, Field(max_length=MAX_NAME)]


class EntityInput(BaseModel):
    """An entity as the MCP reference memory server takes it (every member required)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(max_length=MAX_NAME, description="The name of the entity")]
    entity_type: Annotated[
        str, Field(alias="entityType", max_length=MAX_NAME, description="The type of the entity")
    ]
    observations: Annotated[
        list[Text],
        Field(
            max_length=MAX_ITEMS,
            description="An array of observation contents associated with the entity",
        ),
    ]


class RelationInput(BaseModel):
    """A relation in active voice: ``from`` --relationType--> ``to``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: Annotated[
        str,
        Field(
            alias="from",
            max_length=MAX_NAME,
            description="The name of the entity where the relation starts",
        ),
    ]
    target: Annotated[
        str,
        Field(
            alias="to",
            max_length=MAX_NAME,
            description="The name of the entity where the relation ends",
        ),
    ]
    relation_type: Annotated[
        str,
        Field(alias="relationType", max_length=MAX_NAME, description="The type of the relation"),
    ]


class ObservationInput(BaseModel):
    """Observation texts to add to one existing entity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entity_name: Annotated[
        str,
        Field(
            alias="entityName",
            max_length=MAX_NAME,
            description="The name of the entity to add the observations to",
        ),
    ]
    contents: Annotated[
        list[Text],
        Field(max_length=MAX_ITEMS, description="An array of observation contents to add"),
    ]


class DeletionInput(BaseModel):
    """Observation texts to delete from one entity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    entity_name: Annotated[
        str,
        Field(
            alias="entityName",
            max_length=MAX_NAME,
            description="The name of the entity containing the observations",
        ),
    ]
    observations: Annotated[
        list[Text], Field(max_length=MAX_ITEMS, description="An array of observations to delete")
    ]


def reference_result(text_value: Any, structured: dict[str, Any]) -> CallToolResult:
    """A result shaped as the reference memory server's: its text, its structured content."""
    text = (
        text_value
        if isinstance(text_value, str)
        else json.dumps(text_value, indent=2, ensure_ascii=False)
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )


def readable(error: ValidationError) -> str:
    """One line per wrong field (`entities.0.entityType: Field required`), no values."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


HitKind = Literal["decision", "prompt", "reply", "observation", "entity"]
Risk = Literal["low", "medium", "high"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


# -- the server ------------------------------------------------------------------------------


class FlowLoomMCP(MCPServer[Any]):
    """An MCPServer whose ``resources/list`` also names every recorded decision."""

    def __init__(self, worker: Worker[Backend], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._worker = worker

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        """Refuse arguments a tool does not take; say in words what the schema wants."""
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(k for k in arguments if k not in known)
            if unknown:
                raise ToolError(
                    f"{name} takes no argument {', '.join(repr(k) for k in unknown)}; "
                    f"it takes {', '.join(sorted(known)) or 'none'}"
                )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(
                    f"invalid arguments for {name}: {readable(exc.__cause__)}"
                ) from None
            raise

    async def list_resources(self) -> list[MCPResource]:
        fixed = await super().list_resources()
        decisions = await self._worker.run(lambda b: b.call(lambda b: b.tools.list_decisions()))
        return [*fixed, *(MCPResource.model_validate(decision_resource(d)) for d in decisions)]


def _principal(ctx: Context) -> Principal | None:
    request = ctx.request_context.request
    if request is None:
        return None
    principal = getattr(request, "scope", {}).get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else None


def _stdio_caller(ctx: Context) -> Caller:
    from flowloom.services import default_actor

    params = ctx.request_context.session.client_params
    client = params.client_info.name if params is not None and params.client_info else ""
    actor: dict[str, Any] = {"type": "agent", "id": client or "mcp-client"}
    if params is not None and params.client_info and params.client_info.title:
        actor["name"] = params.client_info.title
    return Caller(actor=actor, user=str(default_actor()["id"]))


def build_server(worker: Worker[Backend], *, log_level: LogLevel = "WARNING") -> FlowLoomMCP:
    """The MCP server over `worker`'s backend: its fourteen tools and the decision resources."""
    server = FlowLoomMCP(
        worker,
        name="flowloom",
        title="FlowLoom",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=log_level,
    )

    async def run(fn: Callable[[Backend], T]) -> T:
        try:
            return await worker.run(lambda backend: backend.call(fn))
        except FlowLoomError as exc:
            raise ToolError(exc.diagnostics()) from exc

    async def caller(ctx: Context, permission: str) -> Caller:
        """Who is calling, once they are known to hold `permission` (HTTP only)."""
        principal = _principal(ctx)
        if principal is None:
            if ctx.request_context.request is not None:
                raise ToolError("this request carries no authenticated API key")
            return _stdio_caller(ctx)

        def check(backend: Backend) -> None:
            if backend.authorizer is None:  # fail closed: a principal needs a decision
                raise PermissionDeniedError(f"{principal.name} lacks permission {permission}")
            backend.authorizer.check(principal, permission, backend.project)

        await run(check)
        return Caller(actor=principal.actor(), user=principal.user_id, authenticated=True)

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    appends = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def search_memory(
        query: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY, description="Words to search for")
        ],
        kinds: Annotated[
            list[HitKind] | None, Field(max_length=5, description="Only these kinds of hits")
        ] = None,
        author: Annotated[str | None, Field(max_length=MAX_NAME)] = None,
        file: Annotated[
            str | None, Field(max_length=MAX_NAME * 4, description="Only items about this file")
        ] = None,
        since: Annotated[
            str | None, Field(max_length=64, description="RFC 3339 time, e.g. 2026-01-31")
        ] = None,
        until: Annotated[str | None, Field(max_length=64, description="RFC 3339 time")] = None,
        branch: Annotated[
            str | None, Field(max_length=MAX_NAME, description="Branch or revision (default HEAD)")
        ] = None,
        all_branches: bool = False,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """Search the project's memory: decisions, prompts, AI replies and observations.

        Ranked full-text results with snippets (matches marked « »). By default only what
        is reachable from the current branch is searched; set all_branches to widen it.
        """
        return await run(
            lambda b: b.tools.search_memory(
                query,
                kinds=kinds,
                author=author,
                file=file,
                since=since,
                until=until,
                branch=branch,
                all_branches=all_branches,
                limit=limit,
            )
        )

    @server.tool(annotations=read_only)
    async def why(
        file: Annotated[
            str,
            Field(
                min_length=1,
                max_length=4096,
                description="Path of a file in the repository (relative to its top)",
            ),
        ],
        line: Annotated[int, Field(ge=1, le=100_000_000, description="Line number, from 1")],
    ) -> dict[str, Any]:
        """Why is this line here? The decision, prompt and AI reply behind it, verified.

        Follows git blame to the commit that last changed the line, then the commit's
        link to its decision record; each ledger entry is proved against the signed log.
        """
        return await run(lambda b: b.tools.why(file, line))

    @server.tool(annotations=read_only)
    async def get_decision(
        id: Annotated[
            str, Field(pattern=r"^D-[0-9a-f]{10}$", description="Decision id, like D-0123456789")
        ],
    ) -> dict[str, Any]:
        """One decision record: title, context, options, choice, rationale, approvals, commits."""
        return await run(lambda b: b.tools.get_decision(id))

    @server.tool(annotations=appends)
    async def record_decision(
        ctx: Context,
        title: Annotated[
            str, Field(min_length=1, max_length=MAX_TITLE, description="What was decided")
        ],
        context: Annotated[
            str, Field(max_length=MAX_TEXT, description="The question or problem behind it")
        ] = "",
        options: Annotated[
            list[Annotated[str, Field(max_length=1000)]],
            Field(max_length=20, description="Options considered"),
        ] = [],  # noqa: B006 - pydantic copies defaults; the schema needs a list
        choice: Annotated[str, Field(max_length=MAX_TEXT, description="The option chosen")] = "",
        rationale: Annotated[str, Field(max_length=MAX_TEXT, description="Why it was chosen")] = "",
        files: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]],
            Field(max_length=MAX_FILES, description="Files the decision affects"),
        ] = [],  # noqa: B006
        tickets: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]],
            Field(max_length=50, description="Ticket ids like ABC-123"),
        ] = [],  # noqa: B006
        risk: Risk = "low",
        requested_by: Annotated[
            str | None, Field(max_length=MAX_NAME, description="Who asked for it (default: you)")
        ] = None,
        session: Annotated[
            str | None, Field(max_length=MAX_NAME, description="The agent session id")
        ] = None,
        model: Annotated[str | None, Field(max_length=MAX_NAME, description="AI model")] = None,
        prompt_entry: Annotated[
            int | None, Field(ge=0, description="Ledger index of the prompt behind it")
        ] = None,
        response_entry: Annotated[
            int | None, Field(ge=0, description="Ledger index of the reply behind it")
        ] = None,
    ) -> dict[str, Any]:
        """Record a decision in the ledger; the next commit in this repository links to it."""
        who = await caller(ctx, "ledger.append")
        return await run(
            lambda b: b.tools.record_decision(
                who,
                title=title,
                context=context,
                options=options,
                choice=choice,
                rationale=rationale,
                files=files,
                tickets=tickets,
                risk=risk,
                requested_by=requested_by,
                session=session,
                model=model,
                prompt_entry=prompt_entry,
                response_entry=response_entry,
            )
        )

    @server.tool(annotations=read_only)
    async def recent_activity(
        limit: Annotated[int, Field(ge=1, le=200, description="How many events")] = 20,
        since: Annotated[
            str | None, Field(max_length=64, description="Only events after this RFC 3339 time")
        ] = None,
    ) -> dict[str, Any]:
        """The latest events in the project's ledger (prompts, decisions, commits), newest first."""
        return await run(lambda b: b.tools.recent_activity(limit=limit, since=since))

    destroys = ToolAnnotations(
        read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
    )
    graph_reads = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    def deleted(what: str) -> CallToolResult:
        message = f"{what} deleted successfully"
        return reference_result(message, {"success": True, "message": message})

    @server.tool(annotations=appends, title="Create Entities")
    async def create_entities(
        ctx: Context,
        entities: Annotated[list[EntityInput], Field(max_length=MAX_ITEMS)],
    ) -> CallToolResult:
        """Create multiple new entities in the knowledge graph (existing names are skipped)."""
        who = await caller(ctx, "ledger.append")
        rows = [(e.name, e.entity_type, e.observations) for e in entities]
        created = await run(lambda b: b.tools.create_entities(who, rows))
        return reference_result(created, {"entities": created})

    @server.tool(annotations=appends, title="Create Relations")
    async def create_relations(
        ctx: Context,
        relations: Annotated[list[RelationInput], Field(max_length=MAX_ITEMS)],
    ) -> CallToolResult:
        """Create multiple new relations between entities in the knowledge graph.

        Relations should be in active voice (from uses to).
        """
        who = await caller(ctx, "ledger.append")
        rows = [(r.source, r.target, r.relation_type) for r in relations]
        created = await run(lambda b: b.tools.create_relations(who, rows))
        return reference_result(created, {"relations": created})

    @server.tool(annotations=appends, title="Add Observations")
    async def add_observations(
        ctx: Context,
        observations: Annotated[list[ObservationInput], Field(max_length=MAX_ITEMS)],
    ) -> CallToolResult:
        """Add new observations to existing entities in the knowledge graph."""
        who = await caller(ctx, "ledger.append")
        rows = [(o.entity_name, o.contents) for o in observations]
        added = await run(lambda b: b.tools.add_observations(who, rows))
        return reference_result(added, {"results": added})

    @server.tool(annotations=destroys, title="Delete Entities")
    async def delete_entities(
        ctx: Context,
        entityNames: Annotated[
            list[Annotated[str, Field(max_length=MAX_NAME)]],
            Field(max_length=MAX_ITEMS, description="An array of entity names to delete"),
        ],
    ) -> CallToolResult:
        """Delete multiple entities and their associated relations from the knowledge graph."""
        who = await caller(ctx, "ledger.append")
        await run(lambda b: b.tools.delete_entities(who, entityNames))
        return deleted("Entities")

    @server.tool(annotations=destroys, title="Delete Observations")
    async def delete_observations(
        ctx: Context,
        deletions: Annotated[list[DeletionInput], Field(max_length=MAX_ITEMS)],
    ) -> CallToolResult:
        """Delete specific observations from entities in the knowledge graph."""
        who = await caller(ctx, "ledger.append")
        rows = [(d.entity_name, d.observations) for d in deletions]
        await run(lambda b: b.tools.delete_observations(who, rows))
        return deleted("Observations")

    @server.tool(annotations=destroys, title="Delete Relations")
    async def delete_relations(
        ctx: Context,
        relations: Annotated[
            list[RelationInput],
            Field(max_length=MAX_ITEMS, description="An array of relations to delete"),
        ],
    ) -> CallToolResult:
        """Delete multiple relations from the knowledge graph."""
        who = await caller(ctx, "ledger.append")
        rows = [(r.source, r.target, r.relation_type) for r in relations]
        await run(lambda b: b.tools.delete_relations(who, rows))
        return deleted("Relations")

    @server.tool(annotations=graph_reads, title="Read Graph")
    async def read_graph() -> CallToolResult:
        """Read the entire knowledge graph (decisions with what they say, and entities)."""
        graph = await run(lambda b: b.tools.read_graph())
        return reference_result(graph, graph)

    @server.tool(annotations=graph_reads, title="Search Nodes")
    async def search_nodes(
        query: Annotated[
            str,
            Field(
                max_length=MAX_QUERY,
                description="The search query to match against entity names, types, and "
                "observation content",
            ),
        ],
    ) -> CallToolResult:
        """Search for nodes in the knowledge graph based on a query."""
        graph = await run(lambda b: b.tools.search_nodes(query))
        return reference_result(graph, graph)

    @server.tool(annotations=graph_reads, title="Open Nodes")
    async def open_nodes(
        names: Annotated[
            list[Annotated[str, Field(max_length=MAX_NAME)]],
            Field(max_length=MAX_ITEMS, description="An array of entity names to retrieve"),
        ],
    ) -> CallToolResult:
        """Open specific nodes in the knowledge graph by their names."""
        graph = await run(lambda b: b.tools.open_nodes(names))
        return reference_result(graph, graph)

    # -- resources ---------------------------------------------------------------------------

    async def read(fn: Callable[[Backend], T]) -> T:
        try:
            return await worker.run(lambda backend: backend.call(fn))
        except (InputError, NotFoundError) as exc:
            raise ResourceNotFoundError(exc.diagnostics()) from exc
        except FlowLoomError as exc:
            raise ResourceError(exc.diagnostics()) from exc

    @server.resource(
        DECISIONS_URI,
        name="decisions",
        title="Decisions",
        description="Every decision recorded in this project, oldest first",
        mime_type="application/json",
    )
    async def decisions() -> str:
        listed = await read(lambda b: b.tools.list_decisions())
        return json.dumps({"decisions": listed}, ensure_ascii=False)

    @server.resource(
        GRAPH_URI,
        name="knowledge-graph",
        title="Knowledge Graph",
        description="The full knowledge graph with all entities and relations",
        mime_type="application/json",
    )
    async def knowledge_graph() -> str:
        """The reference memory server's resource, at its URI, with its text."""
        graph = await read(lambda b: b.tools.read_graph())
        return json.dumps(graph, indent=2, ensure_ascii=False)

    @server.resource(
        DECISIONS_URI + "/{decision_id}",
        name="decision",
        title="Decision",
        description="One decision record with its approvals and linked commits",
        mime_type="application/json",
    )
    async def decision(decision_id: str) -> str:
        def get(backend: Backend) -> dict[str, Any]:
            if len(decision_id) > 64:
                raise InputError("that is not a decision id")
            return backend.tools.get_decision(decision_id)

        return json.dumps(await read(get), ensure_ascii=False)

    return server
