"""The runnable processes: the web app, the worker and the `saypro-bot` command line."""
