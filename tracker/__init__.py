"""Tokens, the redirect server, click classification, promotion and webhook dispatch."""
