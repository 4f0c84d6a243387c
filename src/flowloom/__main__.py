"""`python -m flowloom` runs the command line.

Hooks run on every prompt and every commit, so their commands are dispatched here,
before the click application (and everything it imports) is loaded. `LIGHT_COMMANDS`
maps the first argument to a function `f(argv) -> int` that runs the command with the
remaining arguments (or returns None: it did its light part, and the command line goes
on, as `mcp` does after answering `initialize`); the console script (`flowloom.cli.main`)
consults the same table before it imports click. Add a hot-path command by adding a
line to the table ("module:function", the function taking the arguments after the
command name).
"""

import sys

LIGHT_COMMANDS = {
    "drain": "flowloom.drainer:main",
    "git-hook": "flowloom.capture.githooks.hookmain:main",
    "hook": "flowloom.capture.agents.hookmain:run",
    "mcp": "flowloom.cli.mcp_front:main",
}


def dispatch_light(argv: list[str]) -> None:
    """Run `argv[1]` and exit when it is a light command that finished; return otherwise."""
    if len(argv) > 1 and argv[1] in LIGHT_COMMANDS:
        module_name, _, function = LIGHT_COMMANDS[argv[1]].partition(":")
        module = __import__(module_name, fromlist=[function])
        code = getattr(module, function)(argv[2:])
        if code is not None:
            sys.exit(code)


if __name__ == "__main__":
    dispatch_light(sys.argv)

    from flowloom.cli.main import main

    main()
