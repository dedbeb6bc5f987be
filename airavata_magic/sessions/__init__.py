"""Sessions: the journal of executed cells, redaction, export, templates, sweeps and replay."""
