"""Prometheus metrics of every process: the figures read from the store at scrape time, and the endpoint that serves them."""
