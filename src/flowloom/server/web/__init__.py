"""The web interface: server-rendered pages for people who do not live in a terminal.

`flowloom.server.web.routes.router` is included by `create_app` through ROUTE_MODULES.
"""
