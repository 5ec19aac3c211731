"""``python -m squeeze``: the CLI, for launchers that take a module (``accelerate launch -m``)."""

from squeeze.cli.main import main

main()
