"""The services directory: YAML files in data/services/, validated and queried through SQL."""
