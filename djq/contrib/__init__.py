"""Optional integrations of djq with other parts of the Django ecosystem."""
