"""`python -m runyard`: the same CLI as the `runyard` command."""

from runyard.cli.main import main

if __name__ == "__main__":
    main()
