"""URL layout shared by the routers."""

API_PREFIX = "/api/v1"
