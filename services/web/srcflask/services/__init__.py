"""Multi-step business logic the views call: each function leaves its changes flushed in
the caller's transaction, and the caller (a view or a command) commits once."""
