"""Who may do what: users, machine tokens, roles, sessions, and the append-only audit log."""
