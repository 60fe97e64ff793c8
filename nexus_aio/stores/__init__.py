"""Where state lives: executions, sessions and rate limits; interfaces, memory and SQLite stores."""
