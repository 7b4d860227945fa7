"""One module per `d2v` subcommand; see d2v/cli/__init__.py."""
