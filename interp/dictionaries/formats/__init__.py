"""File layouts of other tools, both ways: SAELens's (`saelens.py`) and eai-sparsify's (`sparsify.py`)."""
