"""Abuse defense: rate limits, bans, brute-force protection, IDS rules, alerts, firewall."""
