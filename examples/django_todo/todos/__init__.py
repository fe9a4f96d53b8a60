"""The todos app: a Todo model whose mark_as_done() sends todo_completed."""
