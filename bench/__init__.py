"""The load benchmark of `saypro-bot run`; bench/load.py is its command (see bench/README.md)."""
