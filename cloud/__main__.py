"""``python -m cloud [COMMAND]``: the ``edgehouse-cloud`` CLI; without a command it serves the API."""

from cloud.cli import main

main()
