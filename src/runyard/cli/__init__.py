"""The `runyard` command line: typer commands that talk to the server only through `runyard.Client`."""
