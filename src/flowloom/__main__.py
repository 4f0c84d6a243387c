"""`python -m flowloom` runs the command line."""

from flowloom.cli.main import main

main()
