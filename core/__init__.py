"""Cross-cutting pieces shared by web, workers and CLI: settings, logging, breakers, retry, webhooks.

No domain rules live here, and nothing here imports another devpulse package.
"""
