"""The ``squeeze`` command line: thin Typer commands over the library."""
