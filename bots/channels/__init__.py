"""One module per provider: builds its channel adapters, web routes and pollers from the settings."""
