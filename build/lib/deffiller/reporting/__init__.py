"""Tables, figures, provenance, the notebook runner and the report."""
