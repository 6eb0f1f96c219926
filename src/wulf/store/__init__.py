"""The durable job database behind one protocol (SQLite now; PostgreSQL can be a second one)."""
