"""What runs inside a Session's sandbox (`python -m runyard.sessions.jupyter`): nothing of the server side."""
