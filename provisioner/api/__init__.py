"""The Environments API over HTTP: the aiohttp client (TLS, proxies, caps) and reading its answers."""
