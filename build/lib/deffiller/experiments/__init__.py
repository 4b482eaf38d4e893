"""One module per notebook concern: each function runs a step of the paper and writes its tables and figures."""
