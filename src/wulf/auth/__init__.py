"""Who may do what: the cluster key, credentials, API tokens, fair use and the network allow-list.

- :mod:`wulf.auth.key`: the cluster key, a secret shared by the server and every agent (and root).
- :mod:`wulf.auth.credential`: MUNGE-like credentials, signed with the key: a user's identity
  vouched for by the agent of the machine they are on, and an agent's own when it registers.
- :mod:`wulf.auth.tokens`: per-user API tokens for the HTTP API and the web page.
- :mod:`wulf.auth.ratelimit`, :mod:`wulf.auth.netmask`: pure parts of fair use and the allow-list.
- :mod:`wulf.auth.vouch`: the agent's credential service on its Unix socket.
- :mod:`wulf.auth.tls`: the cluster's certificate authority and server certificate (``wulf init``).

This package imports nothing at its top: the commands import only what they use.
"""
