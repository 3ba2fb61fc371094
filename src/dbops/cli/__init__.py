"""Typer apps: parse, call one service, render. The only place that prints or exits."""
