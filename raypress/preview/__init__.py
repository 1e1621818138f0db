"""Local preview for ``commands/serve``: the HTTP server, file watching, live reload
(Server-Sent Events and the error overlay) and an execution engine kept warm between
rebuilds."""
