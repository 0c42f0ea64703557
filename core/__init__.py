"""The ground floor: what every app uses (the client's address, the role names, turn-taking,
the one TTL cache). It imports from no app, and audit/ imports only from here."""
