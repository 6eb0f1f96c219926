"""The node agent: watches its node, starts and signals jobs, reports to the server."""
