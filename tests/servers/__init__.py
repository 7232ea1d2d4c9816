"""Server processes the backend tests talk to: a protocol test double and real servers."""
