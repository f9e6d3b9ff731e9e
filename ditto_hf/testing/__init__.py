"""Helpers only the tests and benchmarks use: a loopback server speaking the Hub HTTP protocol
(``hub_server``), a miniature Ditto-1M release (``release``) and small real stages for exercising
the engines (``stages``). Product code never imports this package."""
