"""A template det-sdk plugin (see CONTRIBUTING.md, "Writing a plugin")."""
