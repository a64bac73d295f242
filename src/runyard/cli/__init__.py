"""The `runyard` command line: click commands that talk to the server only through `runyard.rest.Rest`."""
