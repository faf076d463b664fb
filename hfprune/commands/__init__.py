"""One module per `hfprune` command: register(sub) adds its parser; its _cmd_* function runs it."""
