"""The domain: jobs and nodes as plain typed records."""
